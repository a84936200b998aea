"""Offline audits: DeepSHAP attributions of logged frames on the torch twin of the network that drove."""
