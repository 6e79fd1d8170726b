/* Keys of the core's INI sections. docs/config.md describes the same keys. */
#include "experiment.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

const nnopt_param_spec nnopt_experiment_schema[] = {
    {"name", NNOPT_PARAM_STRING, "", "experiment name (default: the INI file's base name)", NULL, 0,
     0},
    {"output", NNOPT_PARAM_STRING, "runs", "folder under which runs/<name>/ is written", NULL, 0,
     0},
    {"description", NNOPT_PARAM_STRING, "", "free text copied into the report", NULL, 0, 0},
};
const int nnopt_experiment_schema_count = COUNT(nnopt_experiment_schema);

const nnopt_param_spec nnopt_plugins_schema[] = {
    {"path", NNOPT_PARAM_STRING, "", "colon-separated folders searched for plugins first", NULL, 0,
     0},
};

const int nnopt_plugins_schema_count = COUNT(nnopt_plugins_schema);

const nnopt_param_spec nnopt_data_schema[] = {
    {"dataset", NNOPT_PARAM_ENUM, "mnist",
     "which dataset: IDX files (mnist, fashion-mnist, idx), CIFAR-10 binary batches (cifar10), "
     "or an image folder <dir>/<split>/<class>/*.{jpg,png} (cifar10-jpeg, images)",
     "mnist|fashion-mnist|idx|cifar10|cifar10-jpeg|images", 0, 0},
    {"dir", NNOPT_PARAM_STRING, "",
     "dataset folder (default: the first of $NNOPT_DATA/<dataset>, ../shared/data/<dataset>, "
     "data/<dataset> holding it; for cifar10 also data/cifar-10-batches-bin; required for "
     "images)",
     NULL, 0, 0},
    {"train_split", NNOPT_PARAM_STRING, "train",
     "image folders: subfolder with the training images", NULL, 0, 0},
    {"test_split", NNOPT_PARAM_STRING, "test", "image folders: subfolder with the test images",
     NULL, 0, 0},
    {"cache", NNOPT_PARAM_STRING, "",
     "image folders: folder for the decoded-image cache (default: <dir>/.nnopt-cache if "
     "writable, else $XDG_CACHE_HOME/nnopt or ~/.cache/nnopt; off = no cache)",
     NULL, 0, 0},
    {"augment_crop", NNOPT_PARAM_INT, "0",
     "training augmentation: random crop of the image zero-padded by this many pixels (0 = off)",
     NULL, 0, 1024},
    {"augment_flip", NNOPT_PARAM_BOOL, "false", "training augmentation: random horizontal flip",
     NULL, 0, 0},
    {"train_images", NNOPT_PARAM_STRING, "train-images-idx3-ubyte.gz", "training images file", NULL,
     0, 0},
    {"train_labels", NNOPT_PARAM_STRING, "train-labels-idx1-ubyte.gz", "training labels file", NULL,
     0, 0},
    {"test_images", NNOPT_PARAM_STRING, "t10k-images-idx3-ubyte.gz", "test images file", NULL, 0,
     0},
    {"test_labels", NNOPT_PARAM_STRING, "t10k-labels-idx1-ubyte.gz", "test labels file", NULL, 0,
     0},
    {"limit_train", NNOPT_PARAM_INT, "0",
     "use only the first N training images (0 = all; image folders: N taken round-robin over the "
     "classes)",
     NULL, 0, 1e12},
    {"limit_test", NNOPT_PARAM_INT, "0",
     "use only the first N test images (0 = all; image folders: round-robin over the classes)",
     NULL, 0, 1e12},
    {"scale", NNOPT_PARAM_FLOAT, "0.00392156862745098", "pixel multiplier (1/255)", NULL, 0, 0},
    {"mean", NNOPT_PARAM_FLOAT_LIST, "0", "per-channel mean subtracted after scaling", NULL, 0, 0},
    {"std", NNOPT_PARAM_FLOAT_LIST, "1", "per-channel std divided by after scaling", NULL, 1e-12,
     1e12},
};
const int nnopt_data_schema_count = COUNT(nnopt_data_schema);

const nnopt_param_spec nnopt_training_schema[] = {
    {"epochs", NNOPT_PARAM_INT, "10", "passes over the training set", NULL, 0, 100000},
    {"batch", NNOPT_PARAM_INT, "128", "training batch size (last partial batch dropped)", NULL, 1,
     1 << 20},
    {"eval_batch", NNOPT_PARAM_INT, "1000", "batch size for evaluation", NULL, 1, 1 << 20},
    {"optimizer", NNOPT_PARAM_ENUM, "sgd", "optimizer", "sgd|adam", 0, 0},
    {"lr", NNOPT_PARAM_FLOAT, "0.1", "learning rate", NULL, 0, 1e6},
    {"momentum", NNOPT_PARAM_FLOAT, "0", "SGD momentum", NULL, 0, 1},
    {"nesterov", NNOPT_PARAM_BOOL, "false", "Nesterov momentum", NULL, 0, 0},
    {"weight_decay", NNOPT_PARAM_FLOAT, "0", "L2 weight decay", NULL, 0, 1},
    {"beta1", NNOPT_PARAM_FLOAT, "0.9", "Adam beta1", NULL, 0, 1},
    {"beta2", NNOPT_PARAM_FLOAT, "0.999", "Adam beta2", NULL, 0, 1},
    {"eps", NNOPT_PARAM_FLOAT, "1e-8", "Adam epsilon", NULL, 0, 1},
    {"lr_schedule", NNOPT_PARAM_ENUM, "constant", "learning-rate schedule", "constant|step|cosine",
     0, 0},
    {"lr_step", NNOPT_PARAM_INT, "30", "step schedule: epochs between decays", NULL, 1, 100000},
    {"lr_gamma", NNOPT_PARAM_FLOAT, "0.1", "step schedule: decay factor", NULL, 0, 1},
    {"seed", NNOPT_PARAM_INT, "42", "seed for initialisation and shuffling", NULL, 0, 0},
    {"shuffle", NNOPT_PARAM_BOOL, "true", "reshuffle the training set every epoch", NULL, 0, 0},
    {"progress", NNOPT_PARAM_ENUM, "auto", "progress bar (auto = when stderr is a terminal)",
     "auto|on|off", 0, 0},
};
const int nnopt_training_schema_count = COUNT(nnopt_training_schema);
