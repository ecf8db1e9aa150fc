"""Reading features for training: point-in-time joins, ranges, realtime views offline."""
