"""The built-in templates and the WorkflowTemplate library API."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_orchestrator.config import ci_cd_template, code_review_template, data_pipeline_template
from ci_orchestrator.errors import UsageError
from ci_orchestrator.runner import StepStatus
from ci_orchestrator.templates import template_names

CHAINS = {
    "ci_cd": ["lint", "build", "test", "deploy"],
    "code_review": ["generate", "test", "review", "merge"],
    "data_pipeline": ["ingest", "validate", "transform", "export"],
}
# What a push to the default branch in GitHub Actions gives the steps (gitinfo.RunContext.env).
PUSH_TO_MAIN = {
    "CI_ORCHESTRATOR_EVENT": "push",
    "CI_ORCHESTRATOR_REF": "refs/heads/main",
    "CI_ORCHESTRATOR_DEFAULT_BRANCH": "main",
}


def test_three_templates_with_their_chains() -> None:
    assert template_names() == sorted(CHAINS)
    for loader in (ci_cd_template, code_review_template, data_pipeline_template):
        template = loader()
        names = [step.name for step in template.steps]
        assert names == CHAINS[template.name]
        for earlier, later in zip(template.steps, template.steps[1:], strict=False):
            assert later.needs == (earlier.name,)
        assert all(step.description for step in template.steps)
        assert template.description


@pytest.mark.parametrize("loader", [ci_cd_template, code_review_template, data_pipeline_template])
def test_each_template_runs_with_overrides(loader: object, tmp_path: Path) -> None:
    template = loader()  # type: ignore[operator]
    first, second, third, last = CHAINS[template.name]
    runner = template.instantiate(
        {first: "echo one", second: lambda: "from python", last: "echo last"},
        state_dir=tmp_path / "state",
        env={"PATH": "/usr/bin:/bin", **PUSH_TO_MAIN},
    )
    result = runner.run()
    assert result.success
    assert result.steps[first].status is StepStatus.COMPLETED
    assert result.steps[second].result == "from python"
    assert (result.steps[third].status, result.steps[third].reason) == (
        StepStatus.SKIPPED,
        "not configured",
    )
    assert (
        result.steps[last].status is StepStatus.COMPLETED
    )  # a skipped-on-purpose need lets it run


@pytest.mark.parametrize(
    "context",
    [
        # A pull request whose author named the head branch after the default one.
        {"CI_ORCHESTRATOR_EVENT": "pull_request", "CI_ORCHESTRATOR_REF": "refs/pull/7/merge",
         "CI_ORCHESTRATOR_BRANCH": "main", "CI_ORCHESTRATOR_DEFAULT_BRANCH": "main"},
        # pull_request_target runs for the base branch's ref.
        {**PUSH_TO_MAIN, "CI_ORCHESTRATOR_EVENT": "pull_request_target"},
        {**PUSH_TO_MAIN, "CI_ORCHESTRATOR_EVENT": "pre-push"},
        {**PUSH_TO_MAIN, "CI_ORCHESTRATOR_EVENT": "local"},
        {**PUSH_TO_MAIN, "CI_ORCHESTRATOR_REF": "refs/heads/feature"},
        {**PUSH_TO_MAIN, "CI_ORCHESTRATOR_DEFAULT_BRANCH": ""},
    ],
    ids=["pull-request", "pull-request-target", "pre-push", "local", "other-branch", "no-default"],
)  # fmt: skip
def test_deploy_and_merge_only_run_for_a_push_to_the_default_branch(
    tmp_path: Path, context: dict[str, str]
) -> None:
    for loader, gated in ((ci_cd_template, "deploy"), (code_review_template, "merge")):
        runner = loader().instantiate(
            {gated: "true"}, state_dir=tmp_path, env={"PATH": "/usr/bin:/bin", **context}
        )
        step = runner.run().steps[gated]
        assert step.status is StepStatus.SKIPPED
        assert step.reason.startswith("condition not met")


def test_unknown_override_suggests(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"has no step 'tets'.*did you mean 'test'"):
        ci_cd_template().instantiate({"tets": "true"})
