//! Drawing: a pure function of [`App`]. Works from 40x12 up; below 60
//! columns the conversation list folds away and the title names the open
//! conversation.

use chrono::{DateTime, Local, Utc};
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, Paragraph};
use ratatui::Frame;
use sotto_core::{Body, MessageState, StoredMessage};
use unicode_width::UnicodeWidthStr;

use super::app::{App, Link, COMMANDS};

fn local(ms: i64) -> DateTime<Local> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().with_timezone(&Local)
}

fn body_text(m: &StoredMessage) -> String {
    if m.detail.deleted {
        return crate::output::DELETED.to_owned();
    }
    match &m.body {
        Body::Text { text } => text.clone(),
        Body::File { file, caption } => {
            let name = sotto_core::files::safe_file_name(&file.name);
            let cap = caption.as_ref().map(|c| format!(" {c}")).unwrap_or_default();
            format!("[file {name}, {} bytes; /download {}]{cap}", file.size, hex::encode(&m.id))
        }
        _ => "[a kind of message this version cannot show]".into(),
    }
}

/// Splits text into rows of at most `width` columns (by display width).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut rows = Vec::new();
    for para in text.split('\n') {
        let mut row = String::new();
        let mut w = 0;
        for word in para.split_inclusive(' ') {
            let ww = word.width();
            if w + ww > width && !row.is_empty() {
                rows.push(std::mem::take(&mut row));
                w = 0;
            }
            if ww > width {
                // A word longer than the row: cut it by characters.
                for ch in word.chars() {
                    let cw = ch.to_string().width();
                    if w + cw > width {
                        rows.push(std::mem::take(&mut row));
                        w = 0;
                    }
                    row.push(ch);
                    w += cw;
                }
            } else {
                row.push_str(word);
                w += ww;
            }
        }
        rows.push(row);
    }
    rows
}

/// The message view's rows for a conversation, oldest first.
/// The rows of the open conversation, and the row where the selected
/// message starts (to scroll it into view).
fn message_rows(app: &App, width: usize) -> (Vec<Line<'static>>, Option<usize>) {
    let Some(conv) = app.model.current.as_ref().and_then(|c| app.model.conversations.get(c)) else {
        let hint = Line::from(Span::styled(
            "No conversation yet. /msg @handle text starts one; /help lists commands.",
            Style::default().fg(Color::DarkGray),
        ));
        return (vec![hint], None);
    };
    let mut selected_row = None;
    let mut rows = Vec::new();
    let mut last_day = None;
    let selected = app.selected.as_ref();
    for m in &conv.messages {
        let t = local(m.sent_at);
        let day = t.date_naive();
        if last_day != Some(day) {
            last_day = Some(day);
            let label = format!(" {} ", day.format("%A %-d %B %Y"));
            let side = width.saturating_sub(label.width()) / 2;
            rows.push(Line::from(Span::styled(
                format!("{}{label}{}", "─".repeat(side), "─".repeat(side)),
                Style::default().fg(Color::DarkGray),
            )));
        }
        if app.new_from.as_ref() == Some(&m.id) {
            let label = " new messages ";
            let side = width.saturating_sub(label.width()) / 2;
            rows.push(Line::from(Span::styled(
                format!("{}{label}{}", "─".repeat(side), "─".repeat(side)),
                Style::default().fg(Color::Red),
            )));
        }
        if m.state == MessageState::System {
            for r in wrap(&format!("-- {} {}", t.format("%H:%M"), body_text(m)), width) {
                rows.push(Line::from(Span::styled(
                    r,
                    Style::default().fg(Color::DarkGray).add_modifier(Modifier::ITALIC),
                )));
            }
            continue;
        }
        let mut mark = match (m.state, crate::output::receipt_state(m)) {
            (MessageState::Pending, _) => " …".to_owned(),
            (_, "read") if conv.name.starts_with('#') => {
                format!(" ✓✓ read by {}", m.detail.receipt.as_ref().map(|r| r.read_by.join(", ")).unwrap_or_default())
            }
            (_, "read") => " ✓✓ read".to_owned(),
            (_, "delivered") => " ✓✓".to_owned(),
            (MessageState::Sent, _) => " ✓".to_owned(),
            (MessageState::NotSent, _) => " ✗ not sent (/retry sends it again)".to_owned(),
            _ => String::new(),
        };
        if m.detail.edited_at.is_some() && !m.detail.deleted {
            mark.insert_str(0, " (edited)");
        }
        if m.detail.expires_at.is_some() {
            mark.push_str(" ⏱");
        }
        if m.detail.pinned {
            mark.push_str(" 📌");
        }
        if selected == Some(&m.id) {
            selected_row = Some(rows.len());
        }
        let who_style = if m.outgoing { Style::default().fg(Color::Cyan) } else { Style::default().fg(Color::Yellow) };
        let head = format!("{} {}: ", t.format("%H:%M"), m.sender);
        let indent = head.width();
        if let Some(reply_to) = &m.detail.reply_to {
            let quoted = conv.messages.iter().find(|q| &q.id == reply_to);
            let quote = match quoted {
                Some(q) => format!("↪ {}: {}", q.sender, body_text(q).replace('\n', " ")),
                None => "↪ an earlier message".to_owned(),
            };
            let cut: String = quote.chars().take(width.saturating_sub(indent + 1).max(10)).collect();
            rows.push(Line::from(vec![
                Span::raw(" ".repeat(indent)),
                Span::styled(cut, Style::default().fg(Color::DarkGray).add_modifier(Modifier::ITALIC)),
            ]));
        }
        let text = format!("{}{mark}", body_text(m));
        let wrapped = wrap(&text, width.saturating_sub(indent).max(10));
        let body_style = if selected == Some(&m.id) {
            Style::default().add_modifier(Modifier::REVERSED)
        } else if !m.outgoing && m.detail.mentions.contains(&app.model.me) {
            Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else if m.detail.deleted {
            Style::default().fg(Color::DarkGray).add_modifier(Modifier::ITALIC)
        } else {
            Style::default()
        };
        for (i, r) in wrapped.into_iter().enumerate() {
            if i == 0 {
                rows.push(Line::from(vec![
                    Span::styled(head.clone(), who_style.add_modifier(Modifier::BOLD)),
                    Span::styled(r, body_style),
                ]));
            } else {
                rows.push(Line::from(vec![Span::raw(" ".repeat(indent)), Span::styled(r, body_style)]));
            }
        }
        if !m.detail.reactions.is_empty() {
            let list: Vec<String> = m.detail.reactions.iter().map(|(e, by)| format!("{e} {}", by.len())).collect();
            rows.push(Line::from(vec![
                Span::raw(" ".repeat(indent)),
                Span::styled(list.join("  "), Style::default().fg(Color::Magenta)),
            ]));
        }
    }
    let typing = conv.typing_now();
    if !typing.is_empty() {
        let who = typing.join(", ");
        rows.push(Line::from(Span::styled(
            format!("{who} {} typing…", if typing.len() == 1 { "is" } else { "are" }),
            Style::default().fg(Color::DarkGray).add_modifier(Modifier::ITALIC),
        )));
    }
    (rows, selected_row)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    let input_rows = app.input.split('\n').count().clamp(1, 5) as u16;
    let outer = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Min(3), Constraint::Length(input_rows + 2), Constraint::Length(1)])
        .split(area);
    let wide = area.width >= 60;
    let (list_area, view_area) = if wide {
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Length(24), Constraint::Min(20)])
            .split(outer[0]);
        (Some(cols[0]), cols[1])
    } else {
        (None, outer[0])
    };

    if let Some(list_area) = list_area {
        let items: Vec<ListItem> = app
            .model
            .order
            .iter()
            .map(|name| {
                let c = &app.model.conversations[name];
                let current = app.model.current.as_deref() == Some(name.as_str());
                let dot = if name.starts_with('@') {
                    if c.online {
                        Span::styled("● ", Style::default().fg(Color::Green))
                    } else {
                        Span::styled("○ ", Style::default().fg(Color::DarkGray))
                    }
                } else {
                    Span::raw("  ")
                };
                let mut spans = vec![dot, Span::raw(name.clone())];
                if c.classical {
                    // Not post-quantum (an older app in it): a quiet mark.
                    spans.push(Span::styled(" ⚠", Style::default().fg(Color::Yellow)));
                }
                if c.unread > 0 {
                    spans.push(Span::styled(
                        format!(" ({})", c.unread),
                        Style::default().fg(Color::Magenta).add_modifier(Modifier::BOLD),
                    ));
                }
                let style = if current { Style::default().add_modifier(Modifier::REVERSED) } else { Style::default() };
                ListItem::new(Line::from(spans)).style(style)
            })
            .collect();
        frame.render_widget(List::new(items).block(Block::default().borders(Borders::ALL).title(" chats ")), list_area);
    }

    let title = match &app.model.current {
        Some(c) => {
            let conv = app.model.conversations.get(c);
            let timer = match conv.map(|c| c.timer).unwrap_or(0) {
                0 => String::new(),
                secs => format!(" ⏱ {}", sotto_core::timer_words(secs)),
            };
            let about = match conv.map(|c| c.description.as_str()).unwrap_or("") {
                "" => String::new(),
                d => format!(" — {}", d.chars().take(40).collect::<String>()),
            };
            let name = c
                .strip_prefix('@')
                .and_then(|h| app.model.names.get(h))
                .filter(|n| !n.is_empty())
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let classical = if conv.is_some_and(|c| c.classical) { " · not post-quantum" } else { "" };
            format!(" {c}{name}{timer}{classical}{about} ")
        }
        None => " sotto ".into(),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(view_area);
    frame.render_widget(block, view_area);
    let (rows, selected_row) = message_rows(app, inner.width as usize);
    let height = inner.height as usize;
    let max_scroll = rows.len().saturating_sub(height);
    let scroll = app.scroll.min(max_scroll);
    let mut start = rows.len().saturating_sub(height + scroll);
    if let Some(row) = selected_row.filter(|r| *r < start || *r >= start + height) {
        // A message selected out of sight (an old search result, or far up
        // with Ctrl-↑) is brought into the middle of the view.
        start = row.saturating_sub(height / 2).min(max_scroll);
    }
    let visible: Vec<Line> = rows.into_iter().skip(start).take(height).collect();
    frame.render_widget(Paragraph::new(visible), inner);

    let input_block = Block::default().borders(Borders::ALL).title(" message (Enter send, Alt-Enter newline, /help) ");
    let input_inner = input_block.inner(outer[1]);
    frame.render_widget(Paragraph::new(app.input.as_str()).block(input_block), outer[1]);
    let before = &app.input[..app.cursor];
    let line_no = before.matches('\n').count() as u16;
    let col = before.rsplit('\n').next().unwrap_or("").width() as u16;
    frame.set_cursor_position((
        input_inner.x + col.min(input_inner.width.saturating_sub(1)),
        input_inner.y + line_no.min(input_inner.height.saturating_sub(1)),
    ));

    let link = match &app.model.link {
        Some(Link::Online) => Span::styled("online", Style::default().fg(Color::Green)),
        Some(Link::Connecting) | None => Span::styled("connecting…", Style::default().fg(Color::Yellow)),
        Some(Link::Reconnecting { reason }) => {
            Span::styled(format!("reconnecting ({reason})"), Style::default().fg(Color::Red))
        }
    };
    let host = app.model.server.split("://").nth(1).and_then(|r| r.split('#').next()).unwrap_or("");
    let mut status = vec![
        Span::styled(format!(" @{} ", app.model.me), Style::default().add_modifier(Modifier::BOLD)),
        // A narrow screen keeps its room for the hotlist and the last line.
        Span::raw(if area.width >= 80 { format!("{host} ") } else { String::new() }),
        link,
    ];
    // The hotlist: where unread messages wait, mentions first (as in
    // weechat), so a narrow screen without the list still shows them.
    let hot = app.hotlist();
    if !hot.is_empty() {
        status.push(Span::raw(" │"));
        for (name, unread, mentioned) in hot {
            let style = if mentioned {
                Style::default().fg(Color::Magenta).add_modifier(Modifier::BOLD)
            } else {
                Style::default().fg(Color::Yellow)
            };
            status.push(Span::styled(format!(" {name}({unread}{})", if mentioned { "@" } else { "" }), style));
        }
    }
    if !app.model.info.is_empty() {
        status.push(Span::raw(format!(" │ {}", app.model.info)));
    }
    let status = Line::from(status);
    frame.render_widget(Paragraph::new(status).style(Style::default().bg(Color::Black)), outer[2]);

    if let Some(view) = &app.search {
        super::search::draw_search(frame, area, view);
    }
    if let Some(notice) = &app.notice {
        draw_notice(frame, area, notice);
    }
    if app.show_help {
        draw_help(frame, area);
    }
}

/// A box with lines to read, wrapped to the screen (a safety number is
/// never cut off).
fn draw_notice(frame: &mut Frame<'_>, area: Rect, notice: &super::attention::Notice) {
    let w = area.width.min(78);
    let inner = w.saturating_sub(2).max(1) as usize;
    let lines: Vec<Line> = notice.lines.iter().flat_map(|l| wrap(l, inner)).map(Line::from).collect();
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    frame.render_widget(Clear, r);
    let title = notice.title.clone();
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)), r);
}

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let mut lines: Vec<Line> = COMMANDS.iter().map(|(c, d)| Line::from(format!("{c:<28} {d}"))).collect();
    lines.push(Line::from(""));
    for (k, d) in [
        ("Ctrl-N / Ctrl-P, Alt-↓/↑", "next / previous conversation"),
        ("Tab", "complete a command, @handle or #group"),
        ("PageUp / PageDown", "scroll the conversation"),
        ("↑ / ↓", "edit your last message (empty line); lines sent before"),
        ("Ctrl-↑ / Ctrl-↓", "select a message (then type to reply, /react, /edit, /delete)"),
        ("←/→ Home/End Ctrl-A/E", "move in the line"),
        ("Ctrl-U / Ctrl-W", "delete to start / a word"),
        ("Alt-Enter", "new line in the message"),
        ("Esc", "close this help"),
    ] {
        lines.push(Line::from(format!("{k:<28} {d}")));
    }
    let w = area.width.min(78);
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    frame.render_widget(Clear, r);
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" help ")), r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::Event;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_owned()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn sample() -> App {
        let mut app = App::default();
        app.on_net(Event::Identity { me: "me".into(), server: "sotto://chat.example:7443#sha256=x".into() });
        app.on_net(Event::Connection(Link::Online));
        app.on_net(Event::Message(Box::new(crate::chat::app::tests::msg("@bob", "bob", "hello there", 1))));
        app.on_net(Event::Message(Box::new(crate::chat::app::tests::msg(
            "@bob",
            "me",
            "hi bob, a long line that has to wrap at the edge of a narrow screen",
            2,
        ))));
        app.on_net(Event::Message(Box::new(crate::chat::app::tests::msg("#crew", "carol", "meeting at 5", 3))));
        app.on_net(Event::Presence(vec![("bob".into(), true)]));
        app
    }

    #[test]
    fn renders_list_messages_and_status_at_80x24() {
        let s = screen(&sample(), 80, 24);
        assert!(s.contains(" chats "), "{s}");
        assert!(s.contains("● @bob"), "online marker: {s}");
        assert!(s.contains("#crew (1)"), "unread count: {s}");
        assert!(s.contains("bob: hello there"), "{s}");
        assert!(s.contains("me: hi bob"), "{s}");
        assert!(s.contains("✓"), "sent mark: {s}");
        assert!(s.contains("@me chat.example:7443 online"), "{s}");
        assert!(s.lines().all(|l| l.chars().count() == 80));
    }

    #[test]
    fn small_phone_screen_folds_the_list_and_wraps() {
        let s = screen(&sample(), 40, 14);
        assert!(!s.contains(" chats "), "{s}");
        assert!(s.contains(" @bob "), "title names the conversation: {s}");
        assert!(s.contains("wrap at the edge"), "long text wraps, nothing is cut: {s}");
    }

    #[test]
    fn help_overlay_lists_commands() {
        let mut app = sample();
        app.show_help = true;
        let s = screen(&app, 80, 24);
        assert!(s.contains("/msg @h text") && s.contains("/download id"), "{s}");
    }

    #[test]
    fn replies_edits_deletes_reactions_receipts_timer_and_typing_show() {
        let mut app = sample();
        let mut reply = crate::chat::app::tests::msg("@bob", "bob", "sounds good", 4);
        reply.detail.reply_to = Some(vec![2]);
        app.on_net(Event::Message(Box::new(reply)));
        let mut first = crate::chat::app::tests::msg("@bob", "bob", "hello there", 1);
        first.detail.edited_at = Some(1);
        first.detail.reactions = vec![("👍".into(), vec!["me".into()])];
        app.on_net(Event::Message(Box::new(first)));
        let mut mine = crate::chat::app::tests::msg("@bob", "me", "hi bob", 2);
        mine.detail.receipt = Some(sotto_core::Receipt { delivered: true, read_by: vec!["bob".into()] });
        app.on_net(Event::Message(Box::new(mine)));
        let mut gone = crate::chat::app::tests::msg("@bob", "bob", "", 5);
        gone.detail.deleted = true;
        app.on_net(Event::Message(Box::new(gone)));
        app.on_net(Event::Timer { conversation: "@bob".into(), secs: 3600 });
        app.on_net(Event::Typing { conversation: "@bob".into(), handle: "bob".into(), typing: true });
        app.open("@bob");
        let s = screen(&app, 80, 24);
        assert!(s.contains("hello there (edited)"), "{s}");
        // (An emoji takes two cells; the second is blank in the buffer.)
        assert!(s.lines().any(|l| l.contains('👍') && l.contains('1')), "{s}");
        assert!(s.contains("↪ me: hi bob"), "{s}");
        assert!(s.contains("hi bob ✓✓ read"), "{s}");
        assert!(s.contains("[message deleted]"), "{s}");
        assert!(s.contains("@bob ⏱ 1 hour"), "{s}");
        assert!(s.contains("bob is typing…"), "{s}");
    }

    #[test]
    fn a_conversation_that_is_not_post_quantum_is_marked_in_the_list_and_title() {
        let mut app = sample();
        app.on_net(Event::Encryption { conversation: "@bob".into(), post_quantum: false });
        app.open("@bob");
        let s = screen(&app, 80, 24);
        assert!(s.contains("@bob ⚠"), "marked in the list: {s}");
        assert!(s.contains("not post-quantum"), "and in the title: {s}");
        app.on_net(Event::Encryption { conversation: "@bob".into(), post_quantum: true });
        let s = screen(&app, 80, 24);
        assert!(!s.contains('⚠') && !s.contains("not post-quantum"), "{s}");
    }

    #[test]
    fn wrapping_respects_width() {
        assert_eq!(wrap("abc def ghi", 7), vec!["abc ", "def ghi"]);
        assert_eq!(wrap("abc def ghi", 6), vec!["abc ", "def ", "ghi"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb", 10), vec!["a", "b"]);
    }
}
