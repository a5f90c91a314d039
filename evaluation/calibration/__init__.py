"""`insid3 calibrate`'s library (docs/calibration.md): which settings work on a user's labelled examples.

examples  the sources (a folder of pairs, a concepts file, COCO) read into concepts and negatives
episodes  the seeded episodes, as a SegmentationBenchmark insid3-eval's runner can score too
sweep     every setting of a grid on one episode, sharing what does not depend on the setting
log       the resumable episode log (evaluation/episode_log.py's, one record per episode)
results   per-setting figures, the recommendation, the bootstrap interval, the score threshold
report    JSON, markdown and the heatmap
run       calibrate(CalibrationSettings): all of it, then the profile (insid3/format/profile.py)
"""
