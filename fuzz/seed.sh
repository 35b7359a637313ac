#!/usr/bin/env bash
# Regenerates the seed corpora (fuzz/seeds/TARGET/) from tests/data and hand-made inputs. The
# seeds are committed (they are small); run this after changing a target's input format.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf seeds
python3 seed.py
du -sh seeds
