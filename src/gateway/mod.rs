//! The gateway modes: the FLV relay (`flv`) and the static file gateway (`file`).
