# Compiled kernel mode (included from tests/CMakeLists.txt): generated
# programs against the reference backend on cpu and blis, the kernel cache
# (miss, hit, corrupted entries) and the fallback without a compiler. Needs a
# C compiler at run time, as compiled mode itself does.
if(TARGET nnopt_backend_blis)
  nnopt_core_test(kernel_compile)
  add_dependencies(test_kernel_compile nnopt_backend_cpu nnopt_backend_blis
    nnopt_technique_kernel_compile)
endif()
