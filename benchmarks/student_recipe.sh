#!/usr/bin/env bash
# The synthetic pretraining recipe shown in the README: a vit_small teacher fine-tuned on the
# synthetic pose card, ViT-Ti students pretrained from unlabeled synthetic person crops with
# DPAL, SAIP and feature-kd, then the smoke suite on each student and on random-init ViT-Ti.
# CPU-only, about 1.5 hours on 2 cores. Re-running skips every finished step.
#   bash benchmarks/student_recipe.sh [WORK_DIR]   (records go to results/student-recipe/smoke/)
set -euo pipefail
work=${1:-recipe-work}
mkdir -p "$work"

[ -d "$work/synth" ] || hcbench data synth --out "$work/synth" --size smoke
hcbench run --backbone vit_small --card synth_pose --synth "$work/synth" --out "$work/teacher" \
    --work-dir "$work/teacher-ckpt" --no-leaderboard
[ -d students/teacher_vits ] || \
    hcbench export "$work/teacher/adhoc/vit_small/synth_pose.json" --name teacher_vits

for method in dpal saip feature-kd; do
    teacher=(--teacher student:teacher_vits)
    [ "$method" = saip ] && teacher=()  # SAIP's expert is an EMA of the student itself
    [ -d "students/vit_tiny_$method" ] || \
        hcbench pretrain "$method" --student vit_tiny "${teacher[@]}" \
            --images "$work/synth/synth_reid/bounding_box_train" --name "vit_tiny_$method" \
            --size small --epochs 15 --batch-size 32 --lr 5e-4 --work-dir "$work/pretrain-$method" --resume
done

backbones=(student:vit_tiny_dpal student:vit_tiny_saip student:vit_tiny_feature-kd vit_tiny)
for backbone in "${backbones[@]}"; do
    hcbench run --backbone "$backbone" --suite smoke --synth "$work/synth" --out results/student-recipe \
        --work-dir "$work/runs" --no-leaderboard
done
hcbench leaderboard --results results/student-recipe --suite smoke --format markdown

# seed spread of the fine-tuning (same students, other fine-tuning seeds; not committed)
for seed in 1 2; do
    for backbone in "${backbones[@]}"; do
        hcbench --quiet run --backbone "$backbone" --suite smoke --seed "$seed" --synth "$work/synth" \
            --out "$work/seed-$seed" --work-dir "$work/runs-seed-$seed" --no-leaderboard
    done
    hcbench leaderboard --results "$work/seed-$seed" --suite smoke --format markdown
done
