"""Model readers: bytes on disk -> graph IR.

flatbuf (bounds-checked FlatBuffers access) -> schema (TFLite field ids and
enums) -> tflite (validated Graph) -> check (supported ops, shape
verification). Nothing here imports TensorFlow: reading must stay fast and
must be safe on files from anywhere.
"""
