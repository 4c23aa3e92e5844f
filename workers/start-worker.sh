#!/bin/sh
# Join a Ray cluster as an autopeft worker node. The head's address comes from RAY_HEAD
# (host:port); GPUs are detected by Ray. Trials run as actors scheduled onto this node.
set -eu
: "${RAY_HEAD:?set RAY_HEAD to the Ray head address, e.g. ray-head:6380}"
exec ray start --address="$RAY_HEAD" --block
