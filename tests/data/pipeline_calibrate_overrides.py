# Config override file for the calibrate task of pipeline_tutorial.yaml: plain assignments to `config`.
config.detection.threshold = 3.5
config.photoCalib = 1.25
