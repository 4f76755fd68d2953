# CANOPY_DEVICE_ONLY: the device's targets alone (the kernels, the model
# engines, `canopy tune / devices / model`, their tests and bench_retina),
# built from the OpenCL loader, CLBlast, libpng + zlib, cJSON, inih and
# libcrypto: no GDAL, libpq, libcurl, expat or oneDNN, and no pkg-config.
# Every library is looked up with find_path / find_library, so a tree of
# unpacked Debian packages named by CMAKE_PREFIX_PATH (bench/gpu-deps.sh,
# bench/gpu.sh) is enough on a machine without them. Defines the imported
# targets canopy::<name> and CLBLAST_VERSION.
function(canopy_find_dep name header lib)
  find_path(CANOPY_${name}_INCLUDE ${header} REQUIRED)
  find_library(CANOPY_${name}_LIBRARY NAMES ${lib} REQUIRED)
  add_library(canopy::${name} INTERFACE IMPORTED GLOBAL)
  set_target_properties(canopy::${name} PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${CANOPY_${name}_INCLUDE}"
    INTERFACE_LINK_LIBRARIES "${CANOPY_${name}_LIBRARY}")
endfunction()
canopy_find_dep(opencl CL/cl.h OpenCL)
canopy_find_dep(clblast clblast_c.h clblast)
canopy_find_dep(png png.h png16)
canopy_find_dep(zlib zlib.h z)
canopy_find_dep(cjson cjson/cJSON.h cjson)
canopy_find_dep(inih ini.h inih)
canopy_find_dep(crypto openssl/evp.h crypto)
# CLBlast's version (the tuning file's key) from its pkg-config file.
get_filename_component(clblast_libdir "${CANOPY_clblast_LIBRARY}" DIRECTORY)
set(CLBLAST_VERSION unknown)
if(EXISTS "${clblast_libdir}/pkgconfig/clblast.pc")
  file(STRINGS "${clblast_libdir}/pkgconfig/clblast.pc" clblast_pc REGEX "^Version:")
  string(REGEX REPLACE "^Version: *" "" CLBLAST_VERSION "${clblast_pc}")
endif()
set(CANOPY_DEPS canopy::opencl canopy::clblast canopy::png canopy::zlib canopy::cjson
    canopy::inih canopy::crypto)
# Sources that need the left-out libraries: S3/SQS, the pipeline, PostgreSQL,
# GDAL rasters, and the CLI commands beyond tune, devices and model.
set(CANOPY_DEVICE_ONLY_EXCLUDE "/src/(aws|pipeline|store)/|/src/image/raster\\.c$")
# The pipeline's device side (pipe_device_*: binarization and detection on
# one device, `canopy devices`) needs none of them.
set(CANOPY_DEVICE_ONLY_KEEP ${CMAKE_SOURCE_DIR}/src/pipeline/process.c)
