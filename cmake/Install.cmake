# Install.cmake -- the api module (src/api); libcrema.so (versioned soname) and libcrema.a
# built from the objects of every module registered with crema_module(); the install rules
# (tools, libraries, the public header, crema.pc, the CMake package config, README +
# licence); the Debian package; and the test that installs into a temporary prefix and builds
# examples/ against it. Included at the end of the top-level CMakeLists.txt, so every module
# is known by then.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Resolves link items (imported targets, files, flags) to what a linker command line needs,
# recursively, skipping crema's own targets (crema_own_targets): out = list of files and flags.
function(crema_resolve_link out)
  set(result)
  foreach(item ${ARGN})
    if(item MATCHES "^\\$<LINK_ONLY:(.*)>$")
      set(item "${CMAKE_MATCH_1}")
    endif()
    if(item IN_LIST crema_own_targets OR item MATCHES "^\\$<")
      continue()
    endif()
    if(TARGET ${item})
      get_target_property(type ${item} TYPE)
      get_target_property(imported ${item} IMPORTED)
      if(imported AND NOT type STREQUAL "INTERFACE_LIBRARY")
        get_target_property(loc ${item} IMPORTED_LOCATION)
        if(NOT loc)
          # Imported per configuration (e.g. by a package's own CMake config): take the first.
          get_target_property(configs ${item} IMPORTED_CONFIGURATIONS)
          if(configs)
            list(GET configs 0 config)
            get_target_property(loc ${item} IMPORTED_LOCATION_${config})
          endif()
        endif()
        if(loc)
          list(APPEND result ${loc})
        endif()
      endif()
      get_target_property(sub ${item} INTERFACE_LINK_LIBRARIES)
      if(sub)
        crema_resolve_link(subres ${sub})
        list(APPEND result ${subres})
      endif()
      get_target_property(opts ${item} INTERFACE_LINK_OPTIONS)
      if(opts)
        list(APPEND result ${opts})
      endif()
    else()
      list(APPEND result ${item})
    endif()
  endforeach()
  list(REMOVE_DUPLICATES result)
  set(${out} ${result} PARENT_SCOPE)
endfunction()

# The public C API: module src/api over the others, its header in include/crema. Tools and
# tests reach it through the crema target, like every other module.
crema_module(api)
target_link_libraries(crema_api PUBLIC crema_solver)
target_include_directories(crema_api PUBLIC ${CMAKE_SOURCE_DIR}/include)
target_link_libraries(crema INTERFACE crema_api)

get_property(CREMA_MODULE_NAMES GLOBAL PROPERTY CREMA_MODULES)
# crema's own targets: their objects are in the library already. Other targets named crema_*
# (e.g. an INTERFACE target wrapping an optional dependency) are dependencies like any other.
set(crema_own_targets crema)
foreach(m ${CREMA_MODULE_NAMES})
  list(APPEND crema_own_targets crema_${m})
endforeach()
set(crema_objects)
set(crema_link_deps)
foreach(m ${CREMA_MODULE_NAMES})
  list(APPEND crema_objects $<TARGET_OBJECTS:crema_${m}>)
  get_target_property(deps crema_${m} INTERFACE_LINK_LIBRARIES)
  if(deps)
    foreach(d ${deps})
      if(d MATCHES "^\\$<LINK_ONLY:(.*)>$")
        set(d "${CMAKE_MATCH_1}")
      endif()
      if(NOT d IN_LIST crema_own_targets)
        list(APPEND crema_link_deps ${d})
      endif()
    endforeach()
  endif()
endforeach()
list(REMOVE_DUPLICATES crema_link_deps)
crema_resolve_link(crema_link_flat ${crema_link_deps})

set(CREMA_LIB_DIR ${CMAKE_BINARY_DIR}/lib)
add_library(crema_shared SHARED ${crema_objects})
add_library(crema::crema ALIAS crema_shared)
set_target_properties(crema_shared PROPERTIES
  OUTPUT_NAME crema EXPORT_NAME crema
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
  LIBRARY_OUTPUT_DIRECTORY ${CREMA_LIB_DIR})
target_link_libraries(crema_shared PRIVATE ${crema_link_deps})
# Every symbol the library uses must be resolved when it is linked, not when a program loads it.
target_link_options(crema_shared PRIVATE -Wl,--no-undefined -Wl,--as-needed)
target_include_directories(crema_shared PUBLIC
  $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

add_library(crema_static STATIC ${crema_objects})
set_target_properties(crema_static PROPERTIES
  OUTPUT_NAME crema EXPORT_NAME crema_static ARCHIVE_OUTPUT_DIRECTORY ${CREMA_LIB_DIR})
# A static archive carries no dependencies: its users link them. They are given by name
# (-lprotobuf-c ...), as in crema.pc's Libs.private, so no build machine's paths are baked in.
# A library outside the compiler's own search path (e.g. Open MPI's) also gets its -L folder.
set(crema_link_names)
foreach(item ${crema_link_flat})
  if(item MATCHES "/lib([^/]+)\\.(so|a)(\\.[0-9.]*)?$")
    set(name ${CMAKE_MATCH_1})
    get_filename_component(dir ${item} DIRECTORY)
    if(NOT dir IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES)
      list(APPEND crema_link_names -L${dir})
    endif()
    list(APPEND crema_link_names ${name})
  elseif(item MATCHES "^-" OR NOT item MATCHES "/")
    list(APPEND crema_link_names ${item})
  endif()
endforeach()
list(REMOVE_DUPLICATES crema_link_names)
foreach(item ${crema_link_names})
  target_link_libraries(crema_static INTERFACE $<LINK_ONLY:${item}>)
endforeach()
target_include_directories(crema_static PUBLIC
  $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

# ---- crema.pc: relocatable (paths relative to the .pc file), so any --prefix works
set(CREMA_PC_LIBS_PRIVATE "")
foreach(item ${crema_link_names})
  if(item MATCHES "^-")
    string(APPEND CREMA_PC_LIBS_PRIVATE " ${item}")
  else()
    string(APPEND CREMA_PC_LIBS_PRIVATE " -l${item}")
  endif()
endforeach()
string(STRIP "${CREMA_PC_LIBS_PRIVATE}" CREMA_PC_LIBS_PRIVATE)
file(RELATIVE_PATH CREMA_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" CREMA_PC_TO_PREFIX "${CREMA_PC_TO_PREFIX}")
configure_file(${CMAKE_SOURCE_DIR}/cmake/crema.pc.in ${CMAKE_BINARY_DIR}/crema.pc @ONLY)

# ---- install rules
file(GLOB crema_tool_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tools/*.c)
set(crema_tools crema_cli)
foreach(src ${crema_tool_srcs})
  get_filename_component(t ${src} NAME_WE)
  list(APPEND crema_tools ${t})
endforeach()
install(TARGETS ${crema_tools} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS crema_shared crema_static EXPORT cremaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/crema DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(FILES ${CMAKE_BINARY_DIR}/crema.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
set(CREMA_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/crema)
install(EXPORT cremaTargets NAMESPACE crema:: DESTINATION ${CREMA_CMAKE_DIR})
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/crema-config.cmake.in
  ${CMAKE_BINARY_DIR}/crema-config.cmake INSTALL_DESTINATION ${CREMA_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/crema-config-version.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/crema-config.cmake ${CMAKE_BINARY_DIR}/crema-config-version.cmake
  DESTINATION ${CREMA_CMAKE_DIR})
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
# Debian policy: the licence also as share/doc/<package>/copyright.
install(FILES ${CMAKE_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME copyright)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples
  FILES_MATCHING PATTERN "*.c" PATTERN "CMakeLists.txt" PATTERN "README.md")

# ---- Debian package: cpack -G DEB (dependencies from dpkg-shlibdeps: the runtime packages
# of the libraries actually linked, optional ones included when built in)
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME crema)
set(CPACK_PACKAGE_VENDOR "crema")
set(CPACK_PACKAGE_CONTACT "crema maintainers <crema@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Caffe-compatible finetuning toolkit and C library")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "crema reads and writes Caffe's formats (prototxt, caffemodel, binaryproto,
solverstate, LMDB), trains and finetunes nets on the CPU, and embeds in C programs
through libcrema (crema/crema.h, pkg-config crema, find_package(crema)).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_SOURCE_DIR}/LICENSE)
include(CPack)

# ---- the install test: install, build examples/ both ways, run them, build the .deb
if(CREMA_BUILD_TESTS)
  set(install_test_mode release)
  if(CREMA_SANITIZE)
    set(install_test_mode sanitize)
  endif()
  add_test(NAME test_install
    COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/test_install.sh ${CMAKE_BINARY_DIR} ${install_test_mode})
  set_tests_properties(test_install PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900
    ENVIRONMENT "OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE")
endif()
