"""Defaults shared by the CLI's parser, the API and the report. No heavy imports: the CLI reads
them before torch is loaded."""

# Learned multi-level mixture (Katzir et al.): training steps per level. Measured on
# fashion-stylegan2 (LearnedMixture.quality on 2000 held-out W, one run): MMD² of the re-generated W
# per level coarse/medium/fine 0.0048/0.0043/0.0047 at 150 steps, 0.0041/0.0070/0.0042 at 200,
# 0.0046/0.0055/0.0070 at 400 (two held-out sets: 0.0017) -- the match stops improving by ~150
# steps; classifier accuracy 0.98/0.97/0.95 at 200 vs 0.99/0.98/0.98 at 400; 21 s vs 43 s for the
# three levels on a 2-core CPU.
LEARNED_STEPS = 200
