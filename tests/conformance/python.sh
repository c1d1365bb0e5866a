# python3: os.walk, shutil.copytree/rmtree, tempfile, pathlib, os.scandir.
set -euo pipefail
python3 "$2/fs.py" "$1"
