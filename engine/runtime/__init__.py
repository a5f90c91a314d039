"""insid3.engine.runtime: the runtime: the Segmenter pipeline, references, decoding, concepts, correspondence, refinement, backends."""
