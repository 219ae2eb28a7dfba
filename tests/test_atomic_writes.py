"""Result files are written atomically: the library never writes a file in place."""

import re
from pathlib import Path

import pytest

from mentalese.atomic_files import save_figure_atomic, write_text_atomic

SRC = Path(__file__).resolve().parents[1] / "src" / "mentalese"
IN_PLACE = re.compile(r"\.write_text\(|\.write_bytes\(|\.savefig\(|\bjson\.dump\(|open\([^)]*['\"][wa]b?['\"]")


# Files whose writes are not result files: kernel interfaces (/proc, cgroupfs) and the sandbox's throwaway
# working directory; code_grading.py's match is inside the source text of a program the sandbox runs.
NOT_RESULT_WRITERS = {"evaluation/sandbox.py", "evaluation/sandbox_cgroups.py", "evaluation/sandbox_launcher.py",
                      "evaluation/code_grading.py"}


def in_place_writes(root: Path) -> list[str]:
    return [f"{p.relative_to(root)}:{n}" for p in sorted(root.rglob("*.py")) if p.name != "atomic_files.py"
            and str(p.relative_to(root)) not in NOT_RESULT_WRITERS
            for n, line in enumerate(p.read_text().splitlines(), 1) if IN_PLACE.search(line.split("#")[0])]


def test_library_writes_result_files_only_through_atomic_files():
    assert in_place_writes(SRC) == []


def test_the_scan_finds_an_in_place_write(tmp_path):
    (tmp_path / "bad.py").write_text("from pathlib import Path\nPath('x').write_text('y')\n")
    assert in_place_writes(tmp_path) == ["bad.py:2"]


def test_failed_figure_write_leaves_the_old_file_and_no_temporary(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = tmp_path / "plot.png"
    write_text_atomic(target, "old")

    class Broken:
        def savefig(self, buffer, **kwargs):
            buffer.write(b"partial")
            raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        save_figure_atomic(Broken(), target)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure_atomic(fig, target, dpi=50)
    plt.close(fig)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
