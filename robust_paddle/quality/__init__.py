"""Label quality: noise-matrix estimation (confident learning), the label-issue report, calibration, plots."""
