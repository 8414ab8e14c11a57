# Writes OUT, a C file defining tsr_kernel_source: the .cl files in SOURCES
# (a |-separated list, in order) concatenated and NUL-terminated.
string(REPLACE "|" ";" SOURCES "${SOURCES}")
set(hex "")
foreach(f ${SOURCES})
  file(READ "${f}" content HEX)
  string(APPEND hex "${content}0a")
endforeach()
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" hex "${hex}")
file(WRITE "${OUT}.tmp" "/* generated from opencl/kernels by embed_kernels.cmake */\nconst char tsr_kernel_source[] = {\n${hex}0x00};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
