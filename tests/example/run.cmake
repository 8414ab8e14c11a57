# test_example: installs the build tree into a temporary prefix, builds
# tests/example against the installed package, and runs its programs.
#   cmake -DBUILD=... -DSRC=... -DWORK=... -DMODEL=... -DIMAGE=... -DAUDIO=... -DFFMPEG=ON|OFF -P run.cmake
file(REMOVE_RECURSE "${WORK}")
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc})")
  endif()
  set(OUT "${out}" PARENT_SCOPE)
endfunction()
run("install" ${CMAKE_COMMAND} --install "${BUILD}" --prefix "${WORK}/prefix")
run("configure" ${CMAKE_COMMAND} -S "${SRC}" -B "${WORK}/build"
    "-DCMAKE_PREFIX_PATH=${WORK}/prefix" -DCMAKE_BUILD_TYPE=Release)
run("build" ${CMAKE_COMMAND} --build "${WORK}/build")
set(env ${CMAKE_COMMAND} -E env "TESSERA_CACHE_DIR=${WORK}/cache")
foreach(h tsr_opencl tsr_vision tsr_text tsr_fusion)
  run("the example of ${h}.h" ${env} "${WORK}/build/header_examples" "${MODEL}" "${IMAGE}"
      "${AUDIO}" ${h})
endforeach()
if(FFMPEG)
  run("the example of tsr_audio.h" "${WORK}/build/header_examples" "${MODEL}" "${IMAGE}"
      "${AUDIO}" tsr_audio)
else()
  message("skipped: the example of tsr_audio.h (built without FFmpeg)")
endif()
run("classify_example" ${env} "${WORK}/build/classify_example" "${MODEL}"
    "red circle,blue star,yellow triangle" "${IMAGE}")
if(NOT OUT MATCHES "red_circle.png: red circle")
  message(FATAL_ERROR "classify_example did not find the red circle")
endif()
file(REMOVE_RECURSE "${WORK}")
message("ok: an outside program built against the installed package")
