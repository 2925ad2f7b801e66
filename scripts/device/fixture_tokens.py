#!/usr/bin/env python3
"""Prints an int tensor of a safetensors file as comma-separated ids: fixture_tokens.py FILE KEY"""
import sys
from safetensors.numpy import load_file
print(",".join(str(int(x)) for x in load_file(sys.argv[1])[sys.argv[2]].reshape(-1)))
