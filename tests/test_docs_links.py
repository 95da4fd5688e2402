"""Every relative link of the README and of docs/ leads somewhere: to a
file of the project and, for a ``#anchor`` into a markdown file, to one of
its headings (as GitHub names them)."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md'] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs',
                                                             '*.md')))
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
FENCED = re.compile(r'^```.*?^```[^\n]*$', re.S | re.M)


def prose(text):
    """``text`` without its fenced code blocks and inline code."""
    return re.sub(r'`[^`\n]*`', '', FENCED.sub('', text))


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and
    ``_`` dropped, spaces as ``-``."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def anchors(path):
    """The anchors of a markdown file's headings (a repeated one gets
    ``-1``, ``-2``...)."""
    with open(path, encoding='utf-8') as f:
        text = FENCED.sub('', f.read())
    seen, names = {}, set()
    for heading in re.findall(r'^#{1,6}\s+(.*?)\s*#*\s*$', text, re.M):
        name = slug(heading)
        names.add(name if name not in seen else '%s-%d' % (name, seen[name]))
        seen[name] = seen.get(name, 0) + 1
    return names


def broken_links(path):
    """``[(link, why)]`` for each relative link of the markdown file
    ``path`` that leads nowhere."""
    with open(path, encoding='utf-8') as f:
        links = LINK.findall(prose(f.read()))
    broken = []
    for link in links:
        if re.match(r'^[a-z][a-z0-9+.-]*:', link, re.I):    # http:, mailto:
            continue
        target, _, anchor = link.partition('#')
        full = os.path.normpath(os.path.join(os.path.dirname(path), target)) \
            if target else path
        if not os.path.exists(full):
            broken.append((link, 'no such file'))
        elif anchor and full.endswith('.md') and \
                anchor not in anchors(full):
            broken.append((link, 'no such heading'))
    return broken


@pytest.mark.parametrize('page', PAGES)
def test_every_relative_link_resolves(page):
    assert broken_links(os.path.join(ROOT, page)) == []


def test_the_readme_links_its_documents():
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        links = {link.partition('#')[0] for link in LINK.findall(f.read())}
    for page in PAGES[1:]:
        assert page in links, page


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / 'other.md').write_text('# A heading: `with` code\n'
                                       '## Twice\n## Twice\n')
    page = tmp_path / 'page.md'
    page.write_text('[ok](other.md#a-heading-with-code) '
                    '[ok](other.md#twice-1) [ok](#here) '
                    '[web](https://example.org/x) ![ok](other.md)\n'
                    '# Here\n'
                    '[gone](missing.md) [bad](other.md#nowhere) '
                    '[bad](#twice)\n'
                    '```\n[not a link](missing.md)\n```\n')
    assert broken_links(str(page)) == [('missing.md', 'no such file'),
                                       ('other.md#nowhere', 'no such heading'),
                                       ('#twice', 'no such heading')]
