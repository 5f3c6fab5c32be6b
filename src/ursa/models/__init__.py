"""Backbones: the registry of names, offline pretrained weights, the classifier head."""

from ursa.models.backbones import (
    OFFLINE_ARCHS,
    BackboneInfo,
    backbone_info,
    create_model,
    layer_groups,
)

__all__ = ["OFFLINE_ARCHS", "BackboneInfo", "backbone_info", "create_model", "layer_groups"]
