# Turns a file into a C++ source holding its bytes, at build time (no hand-escaped strings):
#   cmake -DIN=FILE -DOUT=FILE.cpp -DSYMBOL=kName [-DMAX_BYTES=N] -P Embed.cmake
# defines `extern const char SYMBOL[]` (NUL-terminated) and `extern const std::size_t SYMBOL_size`.
# With MAX_BYTES, a file larger than that fails the build.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR bytes "${digits} / 2")
if(MAX_BYTES AND bytes GREATER MAX_BYTES)
  message(FATAL_ERROR "${IN} is ${bytes} bytes, more than its budget of ${MAX_BYTES}")
endif()
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE "${OUT}.tmp"
  "// Generated from ${IN} by cmake/Embed.cmake: do not edit.\n"
  "#include <cstddef>\n"
  "namespace vitals {\n"
  "extern const char ${SYMBOL}[] = {\n${body}0};\n"
  "extern const std::size_t ${SYMBOL}_size = ${bytes};\n"
  "}  // namespace vitals\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
