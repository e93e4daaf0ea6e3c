"""Extract the Vitis-compatible ap_int/ap_fixed headers from an hls4ml wheel.

Usage: python -m hls_tb.fetch_ap_types WHEEL_DIR_OR_FILE DEST_DIR

The hls4ml wheel (fetched with `pip download --no-deps hls4ml==1.3.0`, no
dependencies installed) ships them under hls4ml/templates/vivado/ap_types/.
Only that folder is copied; nothing of hls4ml is installed or imported.
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile
import zipfile

PREFIX = "hls4ml/templates/vivado/ap_types/"


def extract(wheel: pathlib.Path, dest: pathlib.Path) -> int:
    if wheel.is_dir():
        wheels = sorted(wheel.glob("hls4ml-*.whl"))
        if not wheels:
            raise SystemExit(f"fetch_ap_types: no hls4ml wheel in {wheel}")
        wheel = wheels[-1]
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        members = [n for n in zf.namelist() if n.startswith(PREFIX) and not n.endswith("/")]
        if not any(n.endswith("/ap_int.h") for n in members):
            raise SystemExit(f"fetch_ap_types: {wheel.name} has no {PREFIX}ap_int.h")
        for name in members:
            target = pathlib.Path(tmp, name[len(PREFIX) :])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
        # Write the whole folder, then move it into place: nothing half-written.
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tmp, dest)
    return len(members)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    n = extract(pathlib.Path(argv[0]), pathlib.Path(argv[1]))
    print(f"fetch_ap_types: {n} headers -> {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
