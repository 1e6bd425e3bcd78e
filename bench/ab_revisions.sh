#!/usr/bin/env bash
# bench_train.py and bench_predict.py on another revision and on this checkout, interleaved
# (ABBA order per round), as whole processes on the same machine; prints the medians of each side.
#   bash bench/ab_revisions.sh REV [ROUNDS]     e.g. bash bench/ab_revisions.sh 8704ae0 5
# Both sides run with this checkout's .venv; the other revision's code comes first on PYTHONPATH.
set -euo pipefail
rev=${1:?give a revision to compare with}; rounds=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd); py="$here/.venv/bin/python"
other=$(mktemp -d); out=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$other" >/dev/null 2>&1 || true' EXIT
git -C "$here" worktree add --detach --force "$other" "$rev" >/dev/null
export PIXLEARN_SHARED=${PIXLEARN_SHARED:-$(cd "$here/.." && pwd)/shared}
for i in $(seq 1 "$rounds"); do
  order="before after"; [ $((i % 2)) -eq 0 ] && order="after before"
  for side in $order; do
    dir=$here; [ "$side" = before ] && dir=$other
    (cd "$dir" && PYTHONPATH="$dir/src:$dir/bench" "$py" bench/bench_train.py --no-peer > "$out/train_${side}_$i.txt" 2>&1)
    (cd "$dir" && PYTHONPATH="$dir/src:$dir/bench" "$py" bench/bench_predict.py --no-peer > "$out/predict_${side}_$i.txt" 2>&1)
  done
done
"$py" - "$out" <<'PY'
import glob, re, statistics, sys
root = sys.argv[1]
keys = {"train b10 img/s": ("train", r"pixlearn b10\s+([\d,.]+)"), "predict_array ms": ("predict", r"one decoded image : ([\d.]+)"),
        "predict fp32 ms": ("predict", r"precision='fp32'\s+: ([\d.]+)"), "predict_image ms": ("predict", r"one PNG file\s+: ([\d.]+)"),
        "folder img/s": ("predict", r"with CSV\s+: ([\d,.]+)")}
for label, (kind, pattern) in keys.items():
    med = {}
    for side in ("before", "after"):
        vals = [float(m.group(1).replace(",", "")) for f in sorted(glob.glob(f"{root}/{kind}_{side}_*.txt"))
                if (m := re.search(pattern, open(f).read()))]
        med[side] = statistics.median(vals)
        print(f"{label:<18} {side:<6} median {med[side]:9.2f}  (min {min(vals):.2f}, max {max(vals):.2f}, n={len(vals)})")
    print(f"{label:<18} after / before {med['after'] / med['before']:.3f}")
PY
echo "raw outputs: $out"
