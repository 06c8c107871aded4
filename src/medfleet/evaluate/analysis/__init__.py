"""Analysis across cases: subgroups and fairness, calibration, multi-rater agreement."""
