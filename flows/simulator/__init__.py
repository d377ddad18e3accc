"""The device simulator behind `vitalflow simulate`: a roster, its traffic, one builder per family.

`ava4`, `kati` and `qube` speak the families that `flows.devices.<family>` parses.
"""
