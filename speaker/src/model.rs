//! The speaker's validated internal model of the cluster, converted from Kubernetes objects at the edge.
