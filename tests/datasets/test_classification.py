"""datasets/classification.py: joined VOC lists, layouts and image lists."""
import os

import numpy as np
import PIL.Image
import pytest

from datasets import get_dataset, masked_only, training_data, voc_layout
from datasets.classification import ImageList, VOCClassification
from datasets.voc import VOC_CLASS_NAMES
from helpers import NAMES, refused, write_annotation


def test_join_of_main_and_segmentation_lists(weak_voc):
    """One example per image of the Main list, in its order: the labels of
    its XML (also where the mask shows other classes), its mask where the
    segmentation list has it, else a label map of -1."""
    root, written = weak_voc
    # a masked image whose XML adds a difficult object the mask lacks
    path = os.path.join(root, 'Annotations', 'train_001.xml')
    mask_classes = set(np.unique(written['train_001'][1])) - {0, 255}
    extra = min(set(range(1, 21)) - mask_classes)
    write_annotation(path, [(VOC_CLASS_NAMES[c], 0) for c in mask_classes] +
                     [(VOC_CLASS_NAMES[extra], 1)])
    dataset = get_dataset('voc', root, 'train')
    assert isinstance(dataset, VOCClassification)
    with open(os.path.join(root, 'ImageSets', 'Main', 'train.txt')) as f:
        assert dataset.ids == f.read().split()
    assert len(set(dataset.ids)) == len(dataset) == 7
    assert dataset.has_mask.tolist() == [True] * 3 + [False] * 4
    for i, image_id in enumerate(dataset.ids):
        img, label_map, labels = dataset[i]
        src_img, src_lbl, src_labels = written[image_id]
        assert img.shape == src_img.shape
        if src_lbl is None:
            assert label_map.shape == img.shape[:2]
            assert (label_map == -1).all() and label_map.dtype == np.int32
        else:
            expected = src_lbl.astype(np.int32)
            expected[expected == 255] = -1
            assert np.array_equal(label_map, expected)
        if image_id == 'train_001':
            src_labels = src_labels.copy()
            src_labels[extra - 1] = 1
            assert dataset.difficult_only[i, extra - 1]
        assert np.array_equal(labels, src_labels), image_id
    assert dataset.difficult_only.sum() == 1
    assert sum(not written[i][2].any() for i in dataset.ids) >= 1  # negative


def test_voc_layout_is_found_or_forced(weak_voc):
    root, written = weak_voc
    assert voc_layout(root, 'train') == 'joined'
    os.remove(os.path.join(root, 'ImageSets', 'Segmentation', 'val.txt'))
    assert voc_layout(root, 'val') == 'classification'
    assert voc_layout(root, 'trainval') == 'classification'
    main_val = os.path.join(root, 'ImageSets', 'Main', 'val.txt')
    assert voc_layout(root, main_val) == 'segmentation'   # a list file
    seg = get_dataset('voc', root, 'train', layout='segmentation')
    assert seg.ids == ['train_000', 'train_001', 'train_002']
    assert seg.has_mask.all()
    cls = get_dataset('voc', root, 'train', layout='classification')
    assert len(cls) == 7 and not cls.has_mask.any()
    assert (cls[0][1] == -1).all()
    refused(lambda: get_dataset('voc', root, 'val', layout='joined'),
            'no split file')
    os.rename(main_val, main_val + '.bak')
    assert voc_layout(root, 'val') == 'segmentation'
    refused(lambda: get_dataset('voc', root, 'val',
                                layout='classification'), 'val.txt',
            'no classification list')


def test_segmentation_ids_outside_the_main_list_are_refused(weak_voc):
    root, _ = weak_voc
    seg_list = os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt')
    with open(seg_list, 'a') as f:
        f.write('val_000\n')
    refused(lambda: get_dataset('voc', root, 'train'), seg_list,
            'not in the classification list', 'val_000')


def test_bad_annotation_names_the_file_or_is_skipped(weak_voc, capsys):
    root, _ = weak_voc
    path = os.path.join(root, 'Annotations', 'train_img_001.xml')
    with open(path, 'w') as f:
        f.write('<annotation><object><name>dog')
    refused(lambda: get_dataset('voc', root, 'train'), path, 'truncated')
    os.remove(os.path.join(root, 'JPEGImages', 'train_img_002.jpg'))
    dataset = get_dataset('voc', root, 'train', skip_missing=True)
    assert 'train_img_001' not in dataset.ids and len(dataset) == 5
    assert sorted(dataset.missing) == ['train_img_001', 'train_img_002']
    assert 'train_img_001.xml' in capsys.readouterr().err


def test_masked_only_and_training_examples(weak_voc):
    root, written = weak_voc
    dataset = get_dataset('voc', root, 'train')
    masked = masked_only(dataset)
    assert masked.ids == ['train_000', 'train_001', 'train_002']
    assert masked.has_mask.all() and masked.labels.shape == (3, 20)
    assert np.array_equal(masked[2][1], dataset[2][1])
    refused(lambda: masked_only(get_dataset('voc', root, 'train',
                                            layout='classification'),
                                '--split'), '--split', 'none of its 7')
    x, label_map, labels = training_data(dataset)[4]
    assert x.shape == (3, 40, 48) and x.dtype == np.float32
    assert (label_map == -1).all() and label_map.dtype == np.int32
    assert np.array_equal(labels, written[dataset.ids[4]][2])


def write_images(root, paths, size=(24, 32), seed=0):
    rng = np.random.RandomState(seed)
    for path in paths:
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        PIL.Image.fromarray(rng.randint(0, 256, size + (3,)).astype(
            np.uint8)).save(full)


@pytest.fixture
def image_folder(tmp_path):
    root = str(tmp_path / 'pictures')
    write_images(root, ['dogs/001.jpg', 'street/7.png', 'empty/3.jpg',
                        'mixed.jpg'])
    with open(os.path.join(root, 'class_names.txt'), 'w') as f:
        f.write('\n'.join(NAMES) + '\n')
    return root


def test_plain_list_with_negatives(image_folder):
    with open(os.path.join(image_folder, 'train.txt'), 'w') as f:
        f.write('\ufeff# image  classes\n'
                'dogs/001.jpg dog\n'
                '\n'
                'street/7.png   person, dog\n'
                'empty/3.jpg\n'
                'mixed.jpg cat,person dog ,\n')
    dataset = get_dataset('list', image_folder, 'train')
    assert isinstance(dataset, ImageList)
    assert dataset.ids == ['dogs/001', 'street/7', 'empty/3', 'mixed']
    assert dataset.class_names == NAMES
    expected = [[0, 1, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]]
    assert dataset.labels.tolist() == expected
    assert not dataset.has_mask.any()
    for i in range(len(dataset)):
        img, label_map, labels = dataset[i]
        assert img.shape == (24, 32, 3) and labels.tolist() == expected[i]
        assert (label_map == -1).all() and label_map.shape == (24, 32)
    # a list file path without --data-dir: its folder
    same = get_dataset('list', None, os.path.join(image_folder, 'train.txt'))
    assert same.ids == dataset.ids and same.data_dir == image_folder


def test_csv_list_with_masks_on_some(image_folder):
    lbl = np.zeros((24, 32), np.uint8)
    lbl[4:12, 4:12], lbl[0] = 3, 255      # a person; the mask's class is
    os.makedirs(os.path.join(image_folder, 'masks'))  # not the list's
    PIL.Image.fromarray(lbl).save(os.path.join(image_folder, 'masks',
                                               'm.png'))
    with open(os.path.join(image_folder, 'train.csv'), 'w') as f:
        f.write('source,labels,image,mask\n'
                'web,"dog, person",dogs/001.jpg,masks/m.png\n'
                'web,,empty/3.jpg,\n'
                'cam,cat,mixed.jpg,\n')
    dataset = get_dataset('list', image_folder, 'train')
    assert dataset.ids == ['dogs/001', 'empty/3', 'mixed']
    assert dataset.labels.tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 0]]
    assert dataset.has_mask.tolist() == [True, False, False]
    label_map = dataset[0][1]
    assert (label_map[0] == -1).all() and (label_map[4:12, 4:12] == 3).all()
    assert (dataset[1][1] == -1).all()


BAD_LISTS = [
    ('train.txt', 'dogs/001.jpg horse\n', ['line 1', "'horse'"]),
    ('train.txt', 'dogs/001.jpg dog\n/etc/passwd dog\n',
     ['line 2', 'absolute path']),
    ('train.txt', '../outside.jpg\n', ['line 1', "'..'"]),
    ('train.txt', 'dogs/001.jpg dog\ndogs/001.png cat\n',
     ['line 2', 'repeats line 1']),
    ('train.txt', 'dogs/001.jpg background\n', ['line 1', 'negative']),
    ('train.txt', 'dogs/404.jpg dog\n', ['dogs/404.jpg', 'without']),
    ('train.txt', '# nothing\n', ['is empty']),
    ('train.csv', 'path,classes\ndogs/001.jpg,dog\n',
     ['image and labels']),
    ('train.csv', 'image,labels\ndogs/001.jpg,dog,extra\n',
     ['line 2', 'more fields']),
    ('train.csv', 'image,labels,mask\ndogs/001.jpg,dog,/abs.png\n',
     ['line 2', 'absolute path']),
    # a repeated column took the last one's value
    ('train.csv', 'image,labels,image\ndogs/001.jpg,dog,mixed.jpg\n',
     ['column image repeats']),
]


@pytest.mark.parametrize('name,text,named', BAD_LISTS)
def test_bad_image_list_is_one_line_naming_it(image_folder, name, text,
                                              named):
    path = os.path.join(image_folder, name)
    with open(path, 'w') as f:
        f.write(text)
    refused(lambda: get_dataset('list', image_folder, 'train'),
            path, *named)


def test_a_csv_field_over_the_limit_is_one_line(image_folder):
    """A field longer than csv.field_size_limit() (131072 characters) was
    a traceback."""
    path = os.path.join(image_folder, 'train.csv')
    with open(path, 'w') as f:
        f.write('image,labels\ndogs/001.jpg,"%s"\n' % ('dog ' * 40000))
    refused(lambda: get_dataset('list', image_folder, 'train'),
            path, 'line 2', 'field larger than field limit')


def test_a_class_named_twice_is_refused(image_folder):
    """A repeated name in class_names.txt (two label columns, one name)
    is one line naming the file and the name."""
    path = os.path.join(image_folder, 'class_names.txt')
    with open(path, 'w') as f:
        f.write('background\ncat\ndog\ncat\n')
    with open(os.path.join(image_folder, 'train.txt'), 'w') as f:
        f.write('dogs/001.jpg dog\n')
    refused(lambda: get_dataset('list', image_folder, 'train'),
            path, "'cat' is named twice")


def test_image_list_needs_class_names(image_folder, tmp_path):
    os.remove(os.path.join(image_folder, 'class_names.txt'))
    with open(os.path.join(image_folder, 'train.txt'), 'w') as f:
        f.write('dogs/001.jpg\n')
    refused(lambda: get_dataset('list', image_folder, 'train'),
            'class_names.txt')
    refused(lambda: get_dataset('list', None, 'train'), '--data-dir')
    # a val list takes its training split's classes
    val = get_dataset('list', image_folder, 'train', class_names=NAMES)
    assert val.class_names == NAMES
