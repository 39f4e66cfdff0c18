"""The public interface on the wire: messages, topics, the kind catalogue, line protocol (pure)."""
