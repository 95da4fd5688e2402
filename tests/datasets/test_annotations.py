"""datasets/annotations.py: VOC annotation files, parsed as hostile data."""
import numpy as np
import pytest

from datasets.annotations import read_annotation
from helpers import NAMES, refused, write_annotation


def test_annotation_with_several_objects_and_difficult_ones(tmp_path):
    """Every class with an object is present; a class whose only objects
    are difficult (cat) is present and marked difficult-only, one with a
    difficult and a plain object (person) is not."""
    path = str(tmp_path / 'a.xml')
    write_annotation(path, [('dog', 0), ('person', 1), ('person', 0),
                            ('cat', 1), ('dog', 0)])
    labels, difficult_only = read_annotation(path, NAMES)
    assert labels.tolist() == [1, 1, 1] and labels.dtype == np.int32
    assert difficult_only.tolist() == [True, False, False]
    write_annotation(path, [])
    labels, difficult_only = read_annotation(path, NAMES)
    assert labels.tolist() == [0, 0, 0] and not difficult_only.any()


def test_annotation_names_are_stripped_and_parts_ignored(tmp_path):
    """VOC's person layout annotations nest <part><name>head</name></part>
    inside an object: only the object's own name counts."""
    path = str(tmp_path / 'b.xml')
    with open(path, 'w') as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<annotation>'
                '<object><name>\n\tperson </name><part><name>head</name>'
                '</part></object></annotation>')
    assert read_annotation(path, NAMES)[0].tolist() == [0, 0, 1]


BAD_ANNOTATIONS = {
    'truncated': (b'<annotation><object><name>dog</name><diffi',
                  'malformed or truncated'),
    'malformed': (b'<annotation><object><name>dog</object></annotation>',
                  'malformed or truncated'),
    'empty': (b'', 'malformed or truncated'),
    'binary': (b'\x89PNG\r\n\x1a\n\x00\x00', 'malformed or truncated'),
    'wrong root': (b'<html><object><name>dog</name></object></html>',
                   'not a VOC annotation'),
    'unknown class': (b'<annotation><object><name>horse</name></object>'
                      b'</annotation>', "'horse' is not one of"),
    'bad difficult': (b'<annotation><object><name>dog</name><difficult>yes'
                      b'</difficult></object></annotation>', '<difficult>'),
}


@pytest.mark.parametrize('kind', sorted(BAD_ANNOTATIONS))
def test_bad_annotation_is_one_line_naming_it(tmp_path, kind):
    content, expected = BAD_ANNOTATIONS[kind]
    path = str(tmp_path / 'bad.xml')
    with open(path, 'wb') as f:
        f.write(content)
    refused(lambda: read_annotation(path, NAMES), path, expected)


def test_entity_expansion_bombs_are_refused(tmp_path):
    """A billion laughs (10^10 copies of 'lol' once expanded: it would
    exhaust the memory) and a quadratic blow-up (a 50 kB entity referenced
    10,000 times: 500 MB) are refused at their DTD, unexpanded."""
    levels = ['<!ENTITY lol0 "lol">'] + [
        '<!ENTITY lol%d "%s">' % (k, ('&lol%d;' % (k - 1)) * 10)
        for k in range(1, 11)]
    laughs = ('<?xml version="1.0"?>\n<!DOCTYPE annotation [%s]>\n'
              '<annotation><object><name>&lol10;</name></object>'
              '</annotation>' % ''.join(levels))
    quadratic = ('<!DOCTYPE annotation [<!ENTITY a "%s">]><annotation>'
                 '<object><name>dog</name><pose>%s</pose></object>'
                 '</annotation>' % ('x' * 50000, '&a;' * 10000))
    for name, text in (('laughs.xml', laughs), ('quadratic.xml', quadratic)):
        path = str(tmp_path / name)
        with open(path, 'w') as f:
            f.write(text)
        refused(lambda: read_annotation(path, NAMES), path, 'refused XML',
                'DTD')


def test_external_entities_are_refused_unread(tmp_path):
    """An external entity (a local file) and an external DTD are refused
    without being read: the secret does not appear in the message."""
    secret = tmp_path / 'secret.txt'
    secret.write_text('s3cr3t')
    external = ('<!DOCTYPE annotation [<!ENTITY x SYSTEM "file://%s">]>'
                '<annotation><object><name>&x;</name></object></annotation>'
                % secret)
    dtd = ('<!DOCTYPE annotation SYSTEM "file://%s"><annotation>'
           '</annotation>' % secret)
    for name, text in (('external.xml', external), ('dtd.xml', dtd)):
        path = str(tmp_path / name)
        with open(path, 'w') as f:
            f.write(text)
        message = refused(lambda: read_annotation(path, NAMES), path,
                          'refused XML')
        assert 's3cr3t' not in message


def test_oversized_annotation_is_refused_before_parsing(tmp_path):
    path = str(tmp_path / 'huge.xml')
    with open(path, 'w') as f:
        f.write('<annotation>%s</annotation>' % ('<pose>x</pose>' * 100000))
    refused(lambda: read_annotation(path, NAMES), path, 'bytes')
    refused(lambda: read_annotation(str(tmp_path / 'none.xml'), NAMES),
            'none.xml', 'no such file')
