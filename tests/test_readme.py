"""README.md promises what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_exactly_the_test_command_readme_gives():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Test it", 1)[1]
    command = re.search(r"```sh\n(.+?)\n```", section, re.S).group(1)

    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()

    assert command in ci_lines


def test_readme_documents_every_sandbox_destination():
    from telnyx_simulator import DROPPED, MALFORMED, OUTCOMES, REFUSALS, SLOW

    readme = (ROOT / "README.md").read_text()
    sandbox = readme.split("## The sandbox", 1)[1]

    for digits in [*OUTCOMES, *REFUSALS, MALFORMED, DROPPED, SLOW]:
        assert f"| `{digits}` |" in sandbox, digits
