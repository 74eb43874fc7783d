# Every dependency comes from a Debian package; a missing one names the package to install.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install -y pkg-config")
endif()

macro(crema_require var module package)
  pkg_check_modules(${var} IMPORTED_TARGET ${module})
  if(NOT ${var}_FOUND)
    message(FATAL_ERROR "${module} not found: apt-get install -y ${package}")
  endif()
endmacro()

crema_require(PROTOBUF_C libprotobuf-c libprotobuf-c-dev)
crema_require(STB stb libstb-dev)
crema_require(OPENBLAS openblas libopenblas-dev)
crema_require(LMDB lmdb liblmdb-dev)
if(CREMA_BUILD_TESTS)
  crema_require(CHECK check check)
endif()

find_program(PROTOC_C protoc-c)
if(NOT PROTOC_C)
  message(FATAL_ERROR "protoc-c not found: apt-get install -y protobuf-c-compiler")
endif()

find_package(OpenMP)
if(NOT OpenMP_C_FOUND)
  message(FATAL_ERROR "OpenMP not found: use gcc (apt-get install -y gcc), which ships libgomp")
endif()
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)

# Optional: HDF5 (Debian libhdf5-dev) for HDF5Data/HDF5Output and .h5 snapshots. Without it
# crema builds and those features fail with a message naming the package.
pkg_check_modules(HDF5 QUIET IMPORTED_TARGET hdf5)
if(HDF5_FOUND)
  set(CREMA_HAVE_HDF5 ON)
else()
  message(STATUS "HDF5 not found (apt-get install -y libhdf5-dev): HDF5 data and snapshots disabled")
endif()

# oneDNN (optional): a faster compute engine for convolution when libdnnl-dev is installed.
option(CREMA_ONEDNN "Use oneDNN (libdnnl-dev) as a compute engine when it is installed" ON)
set(CREMA_HAVE_ONEDNN OFF)
if(CREMA_ONEDNN)
  # Found by header and library, not by dnnl-config.cmake: Debian's build of it also asks
  # for OpenCL's headers, which the CPU engine never uses.
  find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
  find_library(DNNL_LIBRARY dnnl)
  if(DNNL_INCLUDE_DIR AND DNNL_LIBRARY)
    set(CREMA_HAVE_ONEDNN ON)
    add_library(onednn_lib INTERFACE)
    target_include_directories(onednn_lib INTERFACE ${DNNL_INCLUDE_DIR})
    target_link_libraries(onednn_lib INTERFACE ${DNNL_LIBRARY})
    message(STATUS "oneDNN found (${DNNL_LIBRARY}): the oneDNN engine is on")
  endif()
endif()
if(NOT CREMA_HAVE_ONEDNN)
  message(STATUS "oneDNN not used (apt-get install -y libdnnl-dev, -DCREMA_ONEDNN=ON): reference engine only")
endif()

# Optional: LevelDB (Debian libleveldb-dev) for Caffe's older data sets. No pkg-config file.
find_path(LEVELDB_INCLUDE_DIR leveldb/c.h)
find_library(LEVELDB_LIBRARY leveldb)
if(LEVELDB_INCLUDE_DIR AND LEVELDB_LIBRARY)
  set(CREMA_HAVE_LEVELDB ON)
else()
  message(STATUS "LevelDB not found (apt-get install -y libleveldb-dev): LevelDB data sets disabled")
endif()
