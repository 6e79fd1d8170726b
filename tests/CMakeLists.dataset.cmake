# IDX loading, shuffling and batch conversion (core/dataset*.c); included from
# tests/CMakeLists.txt. The test writes its IDX files (raw and gzip) to a fresh
# temporary folder, so it needs no data set.
add_executable(test_dataset test_dataset.c)
target_link_libraries(test_dataset PRIVATE nnopt cmocka ZLIB::ZLIB m)
add_test(NAME dataset COMMAND test_dataset)
