//! `/search` in the terminal UI: the results over the screen, newest
//! first; ↑/↓ choose one, Enter opens its conversation with the message
//! selected (scrolled into view), Esc closes.

use chrono::{DateTime, Local};
use crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

use super::app::App;
use crate::frontend::event::SearchHit;

/// The results of the last search, while shown.
#[derive(Debug, Default)]
pub struct SearchView {
    /// What was searched for.
    pub query: String,
    /// Newest first.
    pub hits: Vec<SearchHit>,
    /// The chosen one.
    pub pos: usize,
}

impl App {
    /// A search's results arrived: show them (nothing found says so in the
    /// status line only).
    pub(super) fn on_found(&mut self, query: &str, hits: &[SearchHit]) {
        let (query, hits) = (query.to_owned(), hits.to_vec());
        self.search = (!hits.is_empty()).then_some(SearchView { query, hits, pos: 0 });
    }

    /// Keys while results show; `true` when the key was theirs.
    pub(super) fn search_key(&mut self, code: KeyCode) -> bool {
        let Some(view) = self.search.as_mut() else { return false };
        match code {
            KeyCode::Up => view.pos = view.pos.saturating_sub(1),
            KeyCode::Down => view.pos = (view.pos + 1).min(view.hits.len().saturating_sub(1)),
            KeyCode::Esc => self.search = None,
            KeyCode::Enter => {
                let hit = view.hits[view.pos].clone();
                self.search = None;
                self.open(&hit.conversation);
                self.selected = hex::decode(&hit.id).ok();
                self.model.info = format!("found in {}: type to reply, /react, Esc to stop", hit.conversation);
            }
            _ => return false,
        }
        true
    }
}

/// Cuts `s` to at most `width` columns.
fn cut(s: &str, width: usize) -> String {
    let mut used = 0;
    s.chars()
        .take_while(|c| {
            used += c.width().unwrap_or(0);
            used <= width
        })
        .collect()
}

/// Draws the results over the screen.
pub fn draw_search(frame: &mut Frame<'_>, area: Rect, view: &SearchView) {
    let w = area.width.min(100);
    let h = area.height.min(view.hits.len() as u16 + 4).max(5.min(area.height));
    let inner_w = w.saturating_sub(2) as usize;
    let rows = h.saturating_sub(3) as usize;
    // Keep the chosen one in sight.
    let first = view.pos.saturating_sub(rows.saturating_sub(1));
    let mut lines: Vec<Line> = view
        .hits
        .iter()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(i, hit)| {
            let when = DateTime::from_timestamp_millis(hit.sent_at)
                .map(|t| t.with_timezone(&Local).format("%d %b %H:%M").to_string())
                .unwrap_or_default();
            let text = format!("{} {when} {}: {}", hit.conversation, hit.from, hit.text.replace('\n', " "));
            let style =
                if i == view.pos { Style::default().add_modifier(Modifier::REVERSED) } else { Style::default() };
            Line::styled(cut(&text, inner_w), style)
        })
        .collect();
    lines.push(Line::styled("↑/↓ choose · Enter open · Esc close", Style::default().add_modifier(Modifier::DIM)));
    let title = format!(" {} found for \"{}\" ", view.hits.len(), cut(&view.query, 30));
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    frame.render_widget(Clear, r);
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)), r);
}
