"""The action handlers, one module per area; `protocol.Protocol` combines them."""
