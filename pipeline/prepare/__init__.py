"""The prepare stage: sample point clouds from a source into the points store."""
