//! The pure planner: (model, this node, live speakers) -> this node's desired state.
