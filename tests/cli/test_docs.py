"""The manual: README.md is a short front door, docs/ builds as a site with `mkdocs build --strict`, the
generated configuration reference is current, and no page carries development bookkeeping (tracker
numbers, commit hashes, paths of a development checkout)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").rglob("*.md"))
MARKDOWN = [README, *PAGES]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
# What Python-Markdown takes for an inline HTML tag (its HTML_RE): outside code it vanishes from the page.
HTML_TAG = re.compile(r"<(?!!--)/?[A-Za-z][^<>@ ]*(?: [^<>]*)?>")
MIXED_HEX = re.compile(r"(?<![\w.&#/-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w-])")
BANNED = {
    "a tracker issue number": re.compile(r"\bissues?\s+#?\d+|(?<![\w&#/])#\d+\b", re.I),
    "the word 'lent'": re.compile(r"\blent\b", re.I),
    "the word 'session'": re.compile(r"\bsessions?\b", re.I),
    "$OUT": re.compile(r"\$OUT\b|\$\{OUT\b"),
    "../shared": re.compile(r"\.\./shared\b"),
}


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans."""
    return CODE_SPAN.sub(" ", FENCE.sub("\n", text))


def test_the_pages_exist():
    names = {p.name for p in PAGES}
    for page in ("index.md", "getting-started.md", "datasets.md", "objectives.md", "evaluation.md",
                 "two-towers.md", "graphs.md", "scale.md", "resuming.md", "reference.md", "benchmarks.md",
                 "contributing.md"):
        assert page in names, f"docs/{page} is missing"


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; at most 300 (the rest belongs in docs/)"
    quick = [i for i, line in enumerate(lines) if re.match(r"^##\s+Quick start\b", line, re.I)]
    assert quick and quick[0] < 40, "README.md's '## Quick start' must start within its first 40 lines"
    assert "specrep train" in "\n".join(lines[quick[0]:40]), "the quick start's first command is specrep train"


def test_the_readme_quick_start_holds_the_exact_command_ci_runs():
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert len(ci) == 1, ci
    lines = README.read_text().splitlines()
    quick = next(i for i, line in enumerate(lines) if re.match(r"^##\s+Quick start\b", line, re.I))
    assert ci[0] in lines[quick:quick + 40], f"README.md's quick start must hold .ci/run's command: {ci[0]}"


def test_readme_links_resolve():
    text = prose(README.read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (REPO / target.split("#")[0]).resolve()
        assert path.exists(), f"README.md links to {target}, which does not exist"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_no_development_bookkeeping(path: Path):
    text = path.read_text()
    for what, pattern in BANNED.items():
        match = pattern.search(text)
        assert not match, f"{path.relative_to(REPO)} contains {what}: {match.group(0)!r}"
    shas = [h for h in MIXED_HEX.findall(text) if _is_commit(h)]
    assert not shas, f"{path.relative_to(REPO)} names commits {shas}: name the version (specrep 0.1.0) instead"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_no_text_lost_as_html(path: Path):
    """`<run dir>` outside code is an HTML tag to Markdown, and the words vanish from the page."""
    match = HTML_TAG.search(prose(path.read_text()))
    assert not match, (f"{path.relative_to(REPO)}: {match.group(0)!r} outside code would render as HTML; "
                       "quote it in `...`")


def _is_commit(candidate: str) -> bool:
    """Whether a hex run names a commit of this repository (any such run, where git cannot tell)."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return True
    result = subprocess.run([git, "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"],
                            capture_output=True, text=True)
    return result.returncode == 0


def test_reference_is_current():
    result = subprocess.run([sys.executable, str(REPO / "docs" / "make_reference.py"), "--check"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, (result.stderr.strip().splitlines() or ["make_reference.py failed"])[-1]


def test_mkdocs_build_strict(tmp_path: Path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]'")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "index.html").exists()
