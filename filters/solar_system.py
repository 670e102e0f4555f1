"""Known solar-system objects.

Detections that Rubin associated with a known asteroid or comet (ssObjectId set). The score
is the predicted on-sky rate of motion in deg/day from ssSource, so fast movers such as
near-Earth objects rank first; a detection without a rate scores 1.
"""
NAME = "Known solar-system objects"
READS = ("diaSource", "ssSource")
WHERE = (("diaSource.ssObjectId", "is not", None),)


def filter(alert):
    if alert["diaSource"]["ssObjectId"] is None:
        return False
    ss = alert["ssSource"]
    if ss is None or ss["ephRate"] is None or not ss["ephRate"] > 0:
        return 1.0
    return ss["ephRate"]
