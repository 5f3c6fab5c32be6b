"""The serve stage: a torch-free ONNX Runtime predictor and the inference server.

Not built yet: this package only reserves the name in the layout of DESIGN.md.
"""
