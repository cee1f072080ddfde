"""`install-hook` / `uninstall-hook`: the pipeline as a git pre-push hook.

The hook reads the pushed range from git (one line per ref on stdin), exports it as
`CI_ORCHESTRATOR_FROM_REF` / `CI_ORCHESTRATOR_TO_REF`, and runs the pipeline; a non-zero exit
refuses the push. It says which tree it tested: by default the working tree (fast, but files not
committed count), with `--isolated` the pushed commit checked out in a temporary `git worktree`
(removed after; the run is still recorded in the repository's journal). A hook that was there
before is kept beside ours and runs first.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from ci_orchestrator.errors import UsageError

MARKER = "# installed by ci-orchestrator install-hook"
LEGACY_SUFFIX = ".pre-ci-orchestrator"

HOOK = """#!/bin/sh
{marker}
# Bypass it with `git push --no-verify` or `CI_ORCHESTRATOR_SKIP=1 git push`.
# Remove it with `ci-orchestrator uninstall-hook` (a hook that was here before comes back).
[ "${{CI_ORCHESTRATOR_SKIP:-}}" = "1" ] && exit 0
input=$(cat)
legacy="$0{legacy}"
if [ -x "$legacy" ]; then
    printf '%s\\n' "$input" | "$legacy" "$@" || exit $?
fi
is_zero() {{ case "$1" in *[!0]*) return 1 ;; *) return 0 ;; esac; }}
from_ref=
to_ref=
pushed=0
while read -r local_ref local_sha remote_ref remote_sha; do
    [ -n "$local_sha" ] || continue
    is_zero "$local_sha" && continue  # deleting a branch: nothing to check
    pushed=1
    to_ref=$local_sha
    if is_zero "$remote_sha"; then  # a new branch: from where it left the remote's default
        from_ref=$(git merge-base "$local_sha" "$1/HEAD" 2>/dev/null || true)
    else
        from_ref=$remote_sha
    fi
done <<EOF
$input
EOF
[ "$pushed" = 1 ] || exit 0
export CI_ORCHESTRATOR_FROM_REF="$from_ref" CI_ORCHESTRATOR_TO_REF="$to_ref"
export CI_ORCHESTRATOR_TRIGGER=pre-push
say() {{ printf 'ci-orchestrator pre-push: %s\\n' "$*" >&2; }}
top=$(git rev-parse --show-toplevel) || exit 1
short=$(git rev-parse --short "$to_ref")
if [ {isolated} = 1 ]; then
    # The pushed commit alone, in a temporary worktree; the run goes to this repository's journal.
    tree=$(mktemp -d "${{TMPDIR:-/tmp}}/ci-orchestrator-push.XXXXXX") || exit 1
    if ! git worktree add --quiet --detach "$tree" "$to_ref" >/dev/null; then
        rmdir "$tree"
        say "could not check out $short in a temporary worktree"
        exit 1
    fi
    cleanup() {{
        cd "$top" && git worktree remove --force "$tree" >/dev/null 2>&1
        rm -rf "$tree"
        git worktree prune
    }}
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    export CI_ORCHESTRATOR_JOURNAL="${{CI_ORCHESTRATOR_JOURNAL:-$top/.ci-orchestrator/journal.db}}"
    tested="the pushed commit $short (checked out in a temporary worktree)"
    unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE
    cd "$tree" || exit 1
elif [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    tested="the working tree $top, not only the pushed commit $short: it has uncommitted or"
    tested="$tested untracked files (install-hook --isolated tests the commit alone)"
else
    tested="the working tree $top, clean at $(git rev-parse --short HEAD) (pushing $short)"
fi
say "testing $tested"
python={python}
if [ -x "$python" ]; then
    "$python" -m ci_orchestrator run {args}</dev/null
else
    ci-orchestrator run {args}</dev/null
fi
status=$?
if [ "$status" != 0 ]; then
    say "push refused: the pipeline failed on $tested; to push anyway: git push --no-verify"
fi
exit "$status"
"""


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except OSError:
        raise UsageError("git is not installed or not on PATH") from None
    return done.stdout.strip() if done.returncode == 0 else None


def hooks_dir(cwd: Path | None = None) -> Path:
    """`.git/hooks` of the repository around `cwd`, or a usage error that says why not."""
    if _git("rev-parse", "--git-dir", cwd=cwd) is None:
        raise UsageError("not inside a git repository: cd into one (or `git init`) first")
    custom = _git("config", "core.hooksPath", cwd=cwd)
    if custom:
        raise UsageError(
            f"core.hooksPath is {custom!r}, so git does not run hooks in .git/hooks; "
            f"add `ci-orchestrator run` to {custom}/pre-push yourself, or "
            "`git config --unset core.hooksPath` and install again"
        )
    common = _git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=cwd)
    assert common is not None
    return Path(common) / "hooks"


def install_hook(
    pipeline: str | None = None, cwd: Path | None = None, *, isolated: bool = False
) -> str:
    """Write the pre-push hook; return what was done, for the user. `isolated`: the hook runs
    the pipeline on the pushed commit in a temporary `git worktree`, not on the working tree."""
    hook = hooks_dir(cwd) / "pre-push"
    hook.parent.mkdir(parents=True, exist_ok=True)
    legacy = hook.with_name(hook.name + LEGACY_SUFFIX)
    kept = ""
    if hook.exists() and not _is_ours(hook):
        hook.replace(legacy)
        kept = f"; the existing hook was kept as {legacy.name} and runs first"
    args = shlex.quote(pipeline) if pipeline else ""
    hook.write_text(
        HOOK.format(
            marker=MARKER,
            legacy=LEGACY_SUFFIX,
            python=shlex.quote(sys.executable),
            args=args,
            isolated=int(isolated),
        )
    )
    hook.chmod(0o755)
    tests = (
        "the pushed commit, in a temporary worktree" if isolated else "the working tree as it is"
    )
    return f"pre-push hook installed at {hook}; it tests {tests}{kept}"


def uninstall_hook(cwd: Path | None = None) -> str:
    hook = hooks_dir(cwd) / "pre-push"
    legacy = hook.with_name(hook.name + LEGACY_SUFFIX)
    if not hook.exists() or not _is_ours(hook):
        return f"no ci-orchestrator hook at {hook}; nothing changed"
    hook.unlink()
    if legacy.exists():
        legacy.replace(hook)
        return f"removed the ci-orchestrator hook; restored the previous {hook}"
    return f"removed the ci-orchestrator hook at {hook}"


def _is_ours(hook: Path) -> bool:
    try:
        return MARKER in hook.read_text(errors="replace")
    except OSError:
        return False
