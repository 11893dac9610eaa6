"""Shared vocabulary at the bottom: params, config, errors, devices, console, worker pools."""
