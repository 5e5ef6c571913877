"""The staff room: what people do (send a text, claim, mark handled, block), audited."""
