"""The crown detector network, built from the architecture JSON of FORMAT.md.

Architecture "crown" (stride 4, width 32: 43,412 exported parameters):

    layer  type              in->out  dilation  receptive field (input px)
    c1     conv3 + relu       4->16      1         3
           maxpool 2x2                             4   (jump 2)
    c2     conv3 + relu      16->32      1         8
           maxpool 2x2                            10   (jump 4)
    c3     conv3 + relu      32->32      1        18
    c4     conv3 + relu      32->32      2        34
    c5     conv3 + relu      32->32      4        66
    c6     conv3 + relu      32->32      8       130
    c7     conv1 + relu      32->32      1       130
    head   conv1             32->4       1       130

Receptive field r_l = r_{l-1} + (k_l - 1) * dilation_l * jump_{l-1} (a 2x2
pool adds jump and doubles it): 130 x 130 input pixels, twice the largest
crowns (~60 px). Training puts a batch norm after each relu conv; it is
folded into the conv's weight and bias at export (export_state), so the
file holds plain convs as FORMAT.md requires.
"""

import torch
import torch.nn as nn

def crown_layers(width=32):
    """The crown architecture; width is the channel count of the quarter-resolution layers."""
    w = width
    return [
        {"type": "conv", "name": "c1", "in": 4, "out": 16, "k": 3, "dilation": 1, "act": "relu"},
        {"type": "maxpool"},
        {"type": "conv", "name": "c2", "in": 16, "out": 32, "k": 3, "dilation": 1, "act": "relu"},
        {"type": "maxpool"},
        {"type": "conv", "name": "c3", "in": 32, "out": w, "k": 3, "dilation": 1, "act": "relu"},
        {"type": "conv", "name": "c4", "in": w, "out": w, "k": 3, "dilation": 2, "act": "relu"},
        {"type": "conv", "name": "c5", "in": w, "out": w, "k": 3, "dilation": 4, "act": "relu"},
        {"type": "conv", "name": "c6", "in": w, "out": w, "k": 3, "dilation": 8, "act": "relu"},
        {"type": "conv", "name": "c7", "in": w, "out": 32, "k": 1, "dilation": 1, "act": "relu"},
        {"type": "conv", "name": "head", "in": 32, "out": 4, "k": 1, "dilation": 1, "act": "none"},
]


def crown_arch(version, mean, std, width=32):
    return {
        "name": "canopy-crown",
        "version": version,
        "stride": 4,
        "input": {"channels": ["r", "g", "b", "exg"],
                  "mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "layers": crown_layers(width),
        "outputs": ["heatmap", "log_radius", "dx", "dy"],
    }


def receptive_field(layers):
    rf, jump = 1, 1
    for l in layers:
        if l["type"] == "conv":
            rf += (l["k"] - 1) * l["dilation"] * jump
        else:
            rf += jump
            jump *= 2
    return rf


class CrownNet(nn.Module):
    """Runs the layers of an architecture dict; parameter names are '<layer>.weight/bias'."""

    def __init__(self, arch, heat_prior=0.1, batchnorm=True):
        super().__init__()
        self.arch = arch
        self.convs = nn.ModuleDict()
        self.bns = nn.ModuleDict()
        for l in arch["layers"]:
            if l["type"] == "conv":
                c = nn.Conv2d(l["in"], l["out"], l["k"], padding=l["dilation"] * (l["k"] - 1) // 2,
                              dilation=l["dilation"])
                nn.init.kaiming_normal_(c.weight, nonlinearity="relu")
                nn.init.zeros_(c.bias)
                self.convs[l["name"]] = c
                # batch norm after every relu conv, folded into the conv at export
                if batchnorm and l["act"] == "relu":
                    self.bns[l["name"]] = nn.BatchNorm2d(l["out"])
        head = self.convs[arch["layers"][-1]["name"]]
        nn.init.normal_(head.weight, std=0.01)
        with torch.no_grad():
            head.bias.zero_()
            head.bias[0] = -float(torch.log(torch.tensor((1 - heat_prior) / heat_prior)))
            head.bias[1] = 2.5  # log of a typical crown radius in pixels

    def forward(self, x):
        for l in self.arch["layers"]:
            if l["type"] == "conv":
                x = self.convs[l["name"]](x)
                if l["name"] in self.bns:
                    x = self.bns[l["name"]](x)
                if l["act"] == "relu":
                    x = torch.relu(x)
            else:
                x = nn.functional.max_pool2d(x, 2)
        return x

    def export_state(self):
        """{'c1.weight': tensor, ...} in the naming of FORMAT.md."""
        out = {}
        for name, c in self.convs.items():
            w = c.weight.detach().clone().double()
            b = c.bias.detach().clone().double()
            if name in self.bns:  # fold eval-mode batch norm: y = g (Wx + b - mu) / s + beta
                bn = self.bns[name]
                sc = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
                w = w * sc.reshape(-1, 1, 1, 1)
                b = (b - bn.running_mean.double()) * sc + bn.bias.detach().double()
            out[name + ".weight"] = w.float()
            out[name + ".bias"] = b.float()
        return out
