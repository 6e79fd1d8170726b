# CIFAR-10 binary batches, image folders (JPEG/PNG) and their cache,
# augmentation and per-channel normalisation (core/dataset_cifar.c,
# dataset_images.c, dataset_cache.c, augment.c); included from
# tests/CMakeLists.txt. Fixtures (CIFAR batches, JPEG and PNG files written with
# libjpeg and libpng) go to a fresh temporary folder, so no data set is needed.
add_executable(test_dataset_cifar test_dataset_cifar.c)
target_link_libraries(test_dataset_cifar PRIVATE nnopt cmocka PkgConfig::LIBJPEG PkgConfig::LIBPNG m)
add_test(NAME dataset_cifar COMMAND test_dataset_cifar)
