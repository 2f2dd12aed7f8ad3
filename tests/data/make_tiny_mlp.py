#!/usr/bin/python3
"""Makes tiny_mlp.pt, the TorchScript module the tests train through `model.type: torchscript`:
20 inputs -> 16 relu -> 3 outputs. Run with Debian's python3-torch (1.13): python3 make_tiny_mlp.py"""
import torch
import torch.nn as nn

torch.manual_seed(0)
module = torch.jit.script(nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3)))
module.save("tiny_mlp.pt")
