# Reference-kernel tests (included from tests/CMakeLists.txt). Both take the
# backend name as their argument, so other backends can add_test the same
# executables, e.g. add_test(NAME gradcheck_blis COMMAND test_gradcheck blis).
add_executable(test_ref_ops test_ref_ops.c)
target_link_libraries(test_ref_ops PRIVATE nnopt_test_support cmocka m)
add_test(NAME ref_ops_cpu COMMAND test_ref_ops cpu)

add_executable(test_gradcheck test_gradcheck.c gradcheck_support.c)
target_link_libraries(test_gradcheck PRIVATE nnopt_test_support cmocka m)
add_test(NAME gradcheck_cpu COMMAND test_gradcheck cpu)

# The tests load the plugin at run time: make sure it is built with them.
add_dependencies(test_ref_ops nnopt_backend_cpu)
add_dependencies(test_gradcheck nnopt_backend_cpu)
