"""Path filters and input fingerprints under a real runner: nektos/act in host mode (tests/act.py),
offline, with the journal kept in act's own cache server (issue 16, "Show it").

One story on one cache folder, two act runs:

- A push to main that changes src/ only (`before..after`: two real commits): `docs` has no change
  under its paths and is skipped; every other step runs and passes, and the run is journaled, with
  each step's input fingerprint, in main's history in the cache.
- Pull request 42 (branch `docs-fix`), which changes docs/ only. It left main at the pushed commit;
  main has moved on since with a change to tests/ (base.sha), so only the merge base gives the
  right range (base.sha..head.sha would show tests/ changed). `test` is skipped (no change under
  its paths), `docs` and `spelling` (its inputs are docs/) run, `lint` is up to date against
  main's passing run (`cache: trust-history`), `typecheck` (the same inputs, no trust-history)
  runs. (src/ is the same in the merge GitHub would check out: main's new commit left it alone.) Beside it, the job `shallow` runs the same pipeline in a one-commit clone, as
  actions/checkout leaves by default: the range cannot be known offline, so every step runs and a
  note says why.

act gives every run GITHUB_RUN_ID 1; each run here gets its own, as on GitHub.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from tests.act import (
    FIXTURES,
    ActResult,
    ActSetup,
    Commit,
    Job,
    act_fixture,  # noqa: F401 (the `act` fixture)
    run_workflow,
)
from tests.github_server import FakeGitHub

WORKFLOW = FIXTURES / "skipping.yml"
PULL = 42  # pull_request.json's number
PUSH_RUN, PULL_RUN = 7401, 7402
BRANCH = "docs-fix"  # the pull request's head branch

# Each step says what it did in the log. `test` runs on changes under src/ or tests/ and has the
# same inputs; `lint` and `typecheck` fingerprint src/, one trusting main's history, one not;
# `spelling` fingerprints docs/, trusting main's history.
PIPELINE = """\
version: 1
name: shop
steps:
  docs:
    run: echo building the docs
    paths: [docs/**]
  test:
    run: echo testing the shop
    paths: [src/**, tests/**]
    inputs: [src/**, tests/**]
    cache: trust-history
  lint:
    run: echo linting src
    inputs: [src/**]
    cache: trust-history
  typecheck:
    run: echo type checking src
    inputs: [src/**]
  spelling:
    run: echo checking the spelling of the docs
    inputs: [docs/**]
    cache: trust-history
"""
FILES = {
    ".ci-orchestrator.yml": PIPELINE,
    ".gitignore": ".ci-orchestrator/\nci-orchestrator-junit.xml\n",
    "src/shop.py": "PRICE = 100\n",
    "tests/test_shop.py": "def test_price(): assert True\n",
    "docs/guide.md": "# The shop\n",
}
# After the first commit (all of FILES): main's push; then the pull request's branch, main moving
# on, and the branch's second commit. Dated, so both repositories share the first two's ids.
MAIN_PUSH = Commit("main", "Prices in cents", {"src/shop.py": "PRICE_CENTS = 10000\n"})
PULL_COMMITS = (
    MAIN_PUSH,
    Commit(BRANCH, "Document prices", {"docs/guide.md": "# The shop\n\nPrices are in cents.\n"}),
    Commit("main", "Test in cents", {"tests/test_shop.py": "def test_cents(): assert True\n"}),
    Commit(BRANCH, "Fix a typo", {"docs/guide.md": "# The shop\n\nPrices are in cents!\n"}),
)
SKIPPED, PASSED = "⏭️", "✅"


def push_payload(shas: Sequence[str]) -> Mapping[str, Any]:
    """history_push.json, pushing main from the first commit to the second."""
    event: dict[str, Any] = json.loads((FIXTURES / "history_push.json").read_text())
    before, after = shas
    event.update(before=before, after=after, head_commit={"id": after})
    return event


def pull_payload(shas: Sequence[str]) -> Mapping[str, Any]:
    """pull_request.json from `docs-fix` (its second commit) into main (its newest commit)."""
    event: dict[str, Any] = json.loads((FIXTURES / "pull_request.json").read_text())
    _, _, _, main, head = shas
    event["pull_request"]["base"]["sha"] = main
    event["pull_request"]["head"].update(ref=BRANCH, sha=head, label=f"octocat:{BRANCH}")
    return event


@dataclass(frozen=True)
class Story:
    push: ActResult
    pull: ActResult
    comment: str  # the pull request's comment, as the pull request's run left it

    @property
    def pushed(self) -> str:
        """The commit main's run was on."""
        return self.push.commits[1]


@pytest.fixture(scope="module")
def story(act: ActSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    cache = tmp_path_factory.mktemp("skipping-cache")
    folder = tmp_path_factory.mktemp("skipping")
    push = run_workflow(
        act, folder / "push", WORKFLOW, payload=push_payload, files=FILES, commits=[MAIN_PUSH],
        cache_server=cache, env={"GITHUB_RUN_ID": str(PUSH_RUN)},
    )  # fmt: skip
    github = FakeGitHub().start()
    try:
        github.add_pull_request(PULL)
        pull = run_workflow(
            act, folder / "pull", WORKFLOW, event="pull_request", payload=pull_payload,
            files=FILES, commits=PULL_COMMITS, github=github, cache_server=cache,
            env={"GITHUB_RUN_ID": str(PULL_RUN)},
        )  # fmt: skip
        comments = github.comments.get(PULL, [])
        yield Story(push, pull, str(comments[-1]["body"]) if comments else "")
    finally:
        github.stop()


def steps(job: Job) -> dict[str, tuple[str, str]]:
    """The job summary's step table: step -> (icon, notes), Markdown escapes undone."""
    lines = job.summary.partition("### Steps\n\n")[2].splitlines()
    table = lines[: next((i for i, line in enumerate(lines) if not line.startswith("|")), None)]
    rows = table[2:]  # after the header and its rule
    found = {}
    for row in rows:
        cells = [unescape(cell.strip()) for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]
        found[cells[1]] = (cells[0], cells[-1])
    assert found, job.summary
    return found


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def test_main_is_pushed_from_a_real_commit_to_the_next(story: Story) -> None:
    first, second = story.push.commits
    assert story.pull.commits[:2] == (first, second)  # the same commits in both repositories
    job = story.push.job("pipeline")
    assert job.result == "success", job.log
    assert f"` @ `{second[:7]}`" in job.summary  # the run is on the pushed commit
    assert f"note: changes: push {first[:7]}..{second[:7]}: 1 file" in job.log


def test_a_push_to_main_skips_the_step_with_no_change_under_its_paths(story: Story) -> None:
    job = story.push.job("pipeline")
    assert job.outputs["ci"]["success"] == "true", job.log
    # before..after changed src/shop.py only.
    assert steps(job) == {
        "docs": (SKIPPED, "no changes under docs/**"),
        "test": (PASSED, ""),
        "lint": (PASSED, ""),
        "typecheck": (PASSED, ""),
        "spelling": (PASSED, ""),
    }
    assert "building the docs" not in job.log
    assert "testing the shop" in job.log


def test_a_docs_only_pull_request_skips_test_and_runs_docs(story: Story) -> None:
    job = story.pull.job("pipeline")
    assert job.result == "success", job.log
    rows = steps(job)
    assert rows["test"] == (SKIPPED, "no changes under src/**, tests/**"), job.summary
    assert rows["docs"] == (PASSED, ""), job.summary
    assert rows["spelling"] == (PASSED, ""), job.summary  # trusted, but its inputs changed
    assert "testing the shop" not in job.log
    assert "building the docs" in job.log
    # From where the branch left main (the pushed commit), not from main's newest commit.
    _, pushed, _, main, head = story.pull.commits
    assert pushed == story.pushed
    assert f"merge base {pushed[:7]}..{head[:7]}: 1 file" in job.log
    assert main[:7] not in job.log


def test_a_trust_history_step_unchanged_since_mains_passing_run_is_up_to_date(
    story: Story,
) -> None:
    job = story.pull.job("pipeline")
    # main's run, journaled and saved to the cache by the push, restored here.
    assert "history restored: 1 run in .ci-orchestrator/journal.db" in job.log
    reason = f"up to date (passed on main at {story.pushed[:7]})"
    assert steps(job)["lint"] == (SKIPPED, reason), job.summary
    assert "linting src" not in job.log
    assert reason in story.comment, story.comment or job.log


def test_a_step_without_trust_history_runs_in_actions_with_unchanged_inputs(
    story: Story,
) -> None:
    job = story.pull.job("pipeline")
    assert steps(job)["typecheck"] == (PASSED, ""), job.summary
    assert "type checking src" in job.log


def test_a_shallow_clone_runs_every_step_and_says_why(story: Story) -> None:
    job = story.pull.job("shallow")
    assert job.result == "success", job.log
    assert "shallow: true, 1 commit" in job.log  # neither main nor the merge base is there
    assert all(icon == PASSED for icon, _ in steps(job).values()), job.summary
    [note] = [line for line in job.log.splitlines() if "note: steps with `paths:` run:" in line]
    main = story.pull.commits[3]
    assert f"commit {main[:7]} is not in this clone" in note  # base.sha, unreachable offline
