"""The documentation describes the product, and its links and commands are real.

- No words about how the project was built (sessions, engineers, load stories, issue
  numbers) in README.md, CONTRIBUTING.md, docs/**/*.md or benchmarks/README.md: a figure
  says what was measured and on what hardware, nothing else.
- README.md is a front door: at most 220 lines.
- Every relative link in README.md, CONTRIBUTING.md, docs/ and benchmarks/README.md points at
  an existing file.
- The README's commands stand one to a line (no `&&` / `;` chains).
- The README's test command is ``bash .ci/run``, and that script exists.
- The README's search space is the shipped ``search_spaces/quickstart.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CONTRIBUTING = REPO / "CONTRIBUTING.md"
DOCS = sorted((REPO / "docs").glob("**/*.md"))
BENCHMARKS = REPO / "benchmarks" / "README.md"

#: Words about how the project was built, not what it is (case-insensitive).
BUILD_WORDS = [
    r"\bsessions?\b",
    r"engineer",
    r"\bhelpers?\b",
    r"\bissues? \d+",
    r"#\d+\b",  # an issue or PR number; a markdown heading is "# " and does not match
    r"load average",
    r"other (jobs|engineers|people)",
    r"\bthe brief\b",
    r"\bquiet machine\b",
]
BUILD_RE = re.compile("|".join(f"(?:{p})" for p in BUILD_WORDS), re.IGNORECASE)

#: ``#8`` and the like are trial numbers in printed benchmark output ("quickstart trials #8+"), not issues.
TRIAL_NUMBER_RE = re.compile(r"(?:trials? )?#\d+\s*[–-]\s*#\d+|#\d+ vs #\d+|trials? #\d+\+?", re.IGNORECASE)

LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _files(*paths: Path) -> list[Path]:
    return [p for p in paths if p.is_file()]


def _lines(path: Path):
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        yield number, line, in_fence


def _build_words_in(line: str) -> list[str]:
    """The build words in one line; ``#N`` counts only where it is not a trial number."""
    trial_spans = [t.span() for t in TRIAL_NUMBER_RE.finditer(line)]
    return [m.group(0) for m in BUILD_RE.finditer(line)
            if not (m.group(0).startswith("#") and any(a <= m.start() < b for a, b in trial_spans))]


def _build_word_hits(path: Path) -> list[str]:
    return [f"{path.relative_to(REPO)}:{number}: {word!r} in: {line.strip()[:120]}"
            for number, line, _ in _lines(path) for word in _build_words_in(line)]


def test_the_docs_exist():
    assert README.is_file() and CONTRIBUTING.is_file() and BENCHMARKS.is_file()
    names = {p.name for p in DOCS}
    for page in ("dsl.md", "search.md", "llm.md", "devices.md", "workers.md", "api.md", "cli.md",
                 "own-training.md", "integrations.md", "export.md", "troubleshooting.md"):
        assert page in names, f"docs/{page} is missing"


def test_the_build_word_pattern_catches_what_it_should_and_not_headings():
    for text in ("In session 4 we", "Sessions 4 and 5", "another engineer's run", "a helper ran it",
                 "issue 14", "fixed in #12", "load average 7", "other jobs loaded the cores"):
        assert _build_words_in(text), text
    for text in ("# Benchmarks", "## 2. Sampler quality", "a possession", "trials #8-#19",
                 "quickstart trials #8+ (12)", "before #7 vs #1", "see docs/dsl.md#methods"):
        assert not _build_words_in(text), text


@pytest.mark.parametrize("path", _files(README, CONTRIBUTING, BENCHMARKS, *DOCS),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_words_about_how_the_project_was_built(path):
    hits = _build_word_hits(path)
    assert not hits, "words about how the project was built:\n" + "\n".join(hits)


def test_the_readme_is_a_front_door():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 220, f"README.md has {n} lines; move detail into docs/ (at most 220)"


@pytest.mark.parametrize("path", _files(README, CONTRIBUTING, BENCHMARKS, *DOCS),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_at_a_file(path):
    broken = []
    for number, line, in_fence in _lines(path):
        if in_fence:
            continue
        for m in LINK_RE.finditer(line):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
                continue  # http:, https:, mailto: ... and same-page anchors
            file_part = target.split("#", 1)[0]
            if not (path.parent / file_part).exists():
                broken.append(f"{path.relative_to(REPO)}:{number}: {target}")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_the_readme_test_command_is_the_ci_script():
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.DOTALL)
    commands = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    assert "bash .ci/run" in commands, "the README must give `bash .ci/run` as its test command"
    assert (REPO / ".ci" / "run").is_file()
    assert 'python -m pytest -n 2 -m "not slow"' in commands, "the README must give the fast lane"


def test_every_readme_command_stands_on_its_own_line():
    text = README.read_text(encoding="utf-8")
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if line.lstrip().startswith("#"):
                continue
            code = line.split(" #", 1)[0]
            assert len(code.rstrip()) <= 100, f"README command line too long to read: {line}"
            assert "&&" not in code and ";" not in code, f"one command per line, no chains: {line}"


def test_the_readme_space_is_the_shipped_quickstart():
    text = README.read_text(encoding="utf-8")
    shipped = (REPO / "search_spaces" / "quickstart.yaml").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert any(b.strip() == shipped.strip() for b in blocks), \
        "README.md's search space differs from search_spaces/quickstart.yaml: copy the file into it"
