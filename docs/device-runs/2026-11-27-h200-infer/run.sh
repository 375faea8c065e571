#!/bin/bash
# device check for the image pipeline (issue 4): run from the repo root
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -e /work/main/tests ] || { mkdir -p /work; rm -rf /work/main; ln -s "$PWD" /work/main; }
export XDG_RUNTIME_DIR=/tmp
D=target/devimg; B=$D/unet-gpu
{
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
$B devices 2>&1 | head -3
echo "== infer gpu/cpu on the holdout photos"
for f in weights/holdout/*.jpg; do n=$(basename $f .jpg)
  $B infer $f $OUT/${n}_gpu.png --device gpu 2>&1
  $B infer $f /tmp/${n}_cpu.png --device cpu 2>&1
  cmp -s $OUT/${n}_gpu.png /tmp/${n}_cpu.png && echo "$n: identical PNG bytes" || echo "$n: PNG bytes differ (compare locally)"
done
echo "== compare on the GPU"
$B compare weights/holdout/*.jpg --device gpu --json $OUT/compare.json --out /tmp/side.jpg 2>&1
echo "== 4000x2250 photo, default tiles (1024) and one tile"
/usr/bin/time -f "%e s wall" $B infer $D/huge.jpg /tmp/huge.png --device gpu 2>&1
/usr/bin/time -f "%e s wall" $B infer $D/huge.jpg /tmp/huge1.png --device gpu --tile 4096 2>&1
/usr/bin/time -f "%e s wall" $B infer $D/huge.jpg /tmp/huge_abl.png --device gpu --ablate-skips all 2>&1
echo "== tests/infer.rs on this GPU"
$D/infer-tests --test-threads 1 2>&1 | tail -14
} > $OUT/log.txt 2>&1
cat $OUT/log.txt
