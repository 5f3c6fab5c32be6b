"""The interpret stage: confusion matrix, top losses, Grad-CAM and reports.

Not built yet: this package only reserves the name in the layout of DESIGN.md.
"""
