//! The command line: every command and option, as clap parses them (no
//! I/O here; `main.rs` carries them out).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::export;

#[derive(Parser)]
#[command(name = "sotto", version, about = "End-to-end encrypted messaging over MLS")]
pub(crate) struct Cli {
    /// Profile: a NAME (a folder in sotto's data directory) or a path
    /// (containing `/`). One profile per server account.
    #[arg(long, global = true, env = "SOTTO_PROFILE")]
    pub(crate) profile: Option<String>,
    /// Keep identity and history in memory only: register a throwaway
    /// identity with --server/--name, run the command, leave nothing behind.
    #[arg(long)]
    pub(crate) ephemeral: bool,
    /// With --ephemeral: the server address.
    #[arg(long = "server", requires = "ephemeral", value_name = "ADDRESS")]
    pub(crate) ephemeral_server: Option<String>,
    /// With --ephemeral: the handle to register.
    #[arg(long = "as", requires = "ephemeral", value_name = "HANDLE")]
    pub(crate) ephemeral_name: Option<String>,
    /// With --ephemeral: an invite code.
    #[arg(long = "invite", requires = "ephemeral", value_name = "CODE")]
    pub(crate) ephemeral_invite: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Create an identity and register it on a server.
    Init {
        /// The server's address, as `sotto-server` printed it.
        #[arg(long)]
        server: String,
        /// Your handle on that server.
        #[arg(long)]
        name: String,
        /// An invite code from the server's operator.
        #[arg(long)]
        invite: Option<String>,
        /// Keep the database key in a file instead of deriving it from a passphrase (weaker).
        #[arg(long)]
        no_passphrase: bool,
        /// Show conversations from anyone at once instead of holding them as
        /// message requests (for bots and support accounts; see `sotto
        /// requests --auto-accept`).
        #[arg(long)]
        auto_accept: bool,
    },
    /// Make this new profile a device of an account you use elsewhere:
    /// shows a code (and its QR code) to enter with `sotto device add` on
    /// that account's first device, and waits until it is linked.
    Link {
        /// The account's server address, as `sotto-server` printed it.
        #[arg(long)]
        server: String,
        /// What to call this device (default: the computer's name).
        #[arg(long)]
        name: Option<String>,
        /// Keep the database key in a file instead of deriving it from a passphrase (weaker).
        #[arg(long)]
        no_passphrase: bool,
        /// Give up after this long (e.g. 10m).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Add or remove devices of your account.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// List your account's devices.
    Devices {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Send a message or a file; exits 0 once the server has it.
    Send {
        /// `@handle` or `#group`.
        to: String,
        /// The text (with --file: a caption).
        #[arg(required_unless_present = "file")]
        text: Option<String>,
        /// Send this file, end-to-end encrypted (an interrupted upload
        /// resumes when the same command runs again).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Answer this message (its id, from `history --json`), quoting it.
        #[arg(long, value_name = "ID", conflicts_with = "file")]
        reply_to: Option<String>,
    },
    /// React to a message with an emoji (or take the reaction back).
    React {
        /// The message's id (from `history --json` or `receive --json`).
        id: String,
        /// Any emoji.
        emoji: String,
        /// Take this reaction back.
        #[arg(long)]
        remove: bool,
    },
    /// Your profile (the name you go by, your picture), shared end to end
    /// with the people you talk to; or someone's, as they shared it.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Pin a message for everyone in its conversation (or unpin it).
    Pin {
        /// The message's id.
        id: String,
        /// Unpin it instead.
        #[arg(long)]
        remove: bool,
    },
    /// Change the text of a message you sent, for everyone.
    Edit {
        /// The message's id.
        id: String,
        /// The new text.
        text: String,
    },
    /// Delete a message you sent for everyone (a "message deleted" line
    /// stays), or with --for-me any message from this device only.
    Delete {
        /// The message's id.
        id: String,
        /// Only from this device; nothing is sent.
        #[arg(long)]
        for_me: bool,
    },
    /// Show or set a conversation's disappearing-message timer, for
    /// everyone in it: `off`, or a duration such as 5m, 1h, 1d, 1w, 4w.
    Timer {
        /// `@handle` or `#group`.
        conversation: String,
        /// The new timer (leave out to show the current one).
        duration: Option<String>,
    },
    /// Tell a conversation's members who are online now that you are
    /// typing (for scripts and bots; the terminal and web UIs do it as you
    /// type). Nothing is stored anywhere.
    Typing {
        /// `@handle` or `#group`.
        conversation: String,
        /// Say you stopped instead.
        #[arg(long)]
        stop: bool,
    },
    /// Mark a conversation read (the others see it unless read receipts
    /// are off), or turn sending read receipts on or off.
    Read {
        /// `@handle` or `#group`.
        #[arg(required_unless_present = "receipts")]
        conversation: Option<String>,
        /// Whether the others learn that you read their messages.
        #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
        receipts: Option<String>,
    },
    /// The terminal UI: conversations, live messages, slash commands.
    Chat,
    /// A local web UI on 127.0.0.1 (the printed URL carries the access token).
    Web {
        /// Port (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Do not open a browser.
        #[arg(long)]
        no_open: bool,
    },
    /// Fetch, decrypt and verify a received file.
    Download {
        /// The file message's id (from `receive --json`).
        id: String,
        /// Where to write it (default: the profile's download folder).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Fetch and print new messages.
    Receive {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Keep listening this many seconds for more.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Show a conversation's stored history.
    History {
        /// `@handle`.
        conversation: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Search all stored history (texts, file names and captions), newest
    /// first. Every word must appear; the last may be the start of a word.
    Search {
        /// What to look for (may start with `-`).
        #[arg(allow_hyphen_values = true)]
        text: String,
        /// Only in this conversation (`@handle` or `#group`).
        #[arg(long = "in", value_name = "CONVERSATION")]
        conversation: Option<String>,
        /// At most this many results (1 to 200).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line (as `history --json`).
        #[arg(long)]
        json: bool,
    },
    /// List contacts (and who of them is online).
    Contacts {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Manage group conversations.
    #[command(subcommand)]
    Group(GroupCommand),
    /// List group conversations.
    Groups {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show how a conversation is encrypted: its MLS suite (post-quantum
    /// or not), epoch and member devices. Needs no server.
    Info {
        /// `@handle` or `#group`.
        conversation: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show the safety number shared with a contact, or confirm it matches.
    Verify {
        /// `@handle`.
        contact: String,
        /// The digits the other person reads out; marks them verified if equal.
        #[arg(long, value_name = "DIGITS")]
        confirm: Option<String>,
    },
    /// Message requests: conversations started by someone you have not
    /// written to or accepted yet. Nothing of them shows until you accept.
    Requests {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// `on`: conversations from anyone show at once, with no request
        /// (for bots and support accounts); `off` (the default) holds them.
        #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
        auto_accept: Option<String>,
    },
    /// Accept a message request (`@handle` or `#group`): its messages show,
    /// you can answer, and its sender's later conversations show at once.
    Accept {
        /// The conversation, as `sotto requests` names it.
        conversation: String,
    },
    /// Decline a message request: its messages are deleted and nothing more
    /// of it reaches this device (`sotto block` also refuses the person).
    Decline {
        /// The conversation, as `sotto requests` names it.
        conversation: String,
    },
    /// Block someone: their messages and invitations are dropped, in every
    /// conversation; they no longer see whether you are online, and are not
    /// told.
    Block {
        /// `@handle`.
        contact: String,
    },
    /// Lift a block.
    Unblock {
        /// `@handle`.
        contact: String,
    },
    /// The people you blocked.
    Blocked,
    /// Accept a contact's changed account key (after comparing safety numbers).
    Trust {
        /// `@handle`.
        contact: String,
    },
    /// Export a conversation (or all of them) with time and sender of every message.
    Export {
        /// `@handle` or `#group` (or use --all).
        conversation: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "txt")]
        format: export::Format,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Export every conversation into this folder.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["conversation", "output"])]
        all: Option<PathBuf>,
        /// Also save the conversations' files beside the export (in
        /// `DIR/files/`, or `NAME-files/` next to `-o NAME`), fetching those
        /// this device has not saved yet.
        #[arg(long)]
        with_files: bool,
    },
    /// Encrypted backups of the whole profile.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Your account on the server.
    #[command(subcommand)]
    Account(AccountCommand),
    /// List profiles (server and handle of those that can be opened).
    Profiles,
    /// Type the profile's passphrase once: a background agent keeps the
    /// key in memory (never on disk) and later commands do not ask.
    Unlock {
        /// How long the agent keeps it (e.g. 30m, 8h).
        #[arg(long = "for", value_name = "DURATION", default_value = "8h", value_parser = humantime::parse_duration)]
        hold: Duration,
    },
    /// Make the agent forget every unlocked profile (commands ask again).
    Lock,
    /// The unlock agent itself (started by `sotto unlock`).
    #[command(hide = true)]
    Agent {
        /// Where to listen.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Change the profile's passphrase (re-keys the local database).
    Passphrase {
        /// Switch to a key file instead of a passphrase (weaker).
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Send one message to many conversations, each copy encrypted for its own.
    Broadcast {
        /// The text (with --file: a caption).
        #[arg(required_unless_present = "file")]
        text: Option<String>,
        /// Send this file (uploaded once, fetched by every recipient).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Comma-separated `@handle`s and `#group`s (default: every one-to-one contact).
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum DeviceCommand {
    /// Link the device that shows CODE (from `sotto link` on it): it gets
    /// this account's contacts and trust decisions and joins every
    /// conversation from now on. Only the account's first device can.
    Add {
        /// The code the new device shows.
        code: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// How long to wait for the new device to come online and join
        /// the conversations (after that it joins at this device's next
        /// connection).
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// Days of history (messages, and the files this device still has)
        /// to hand over to the new device, encrypted end to end; 0 for none.
        #[arg(long, default_value_t = sotto_client::devices::DEFAULT_HISTORY_DAYS, value_name = "DAYS")]
        history: u32,
    },
    /// Remove a device for good (a lost phone): it leaves every
    /// conversation, reads nothing sent from now on and cannot log in.
    Remove {
        /// The device's number, from `sotto devices`.
        id: u32,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum AccountCommand {
    /// Delete your account: leave every conversation (the others are told),
    /// free the handle on the server, and remove this profile from this
    /// computer. Export first what you want to keep.
    Delete {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum BackupCommand {
    /// Write an encrypted backup of the profile (asks for a backup passphrase,
    /// or reads SOTTO_BACKUP_PASSPHRASE).
    Create {
        /// The backup file to write.
        file: PathBuf,
    },
    /// Restore a backup into a new profile (the --profile location).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Protect the restored profile with a key file instead of a passphrase (weaker).
        #[arg(long)]
        no_passphrase: bool,
        /// Become a device of its own beside the one backed up (a second
        /// machine), instead of replacing it. Needs the account's first
        /// device's backup and the server.
        #[arg(long)]
        new_device: bool,
        /// The new device's name (with --new-device; default: the computer's name).
        #[arg(long, requires = "new_device")]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a group with these people.
    Create {
        /// Group name.
        name: String,
        /// Members, as `@handle`.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Add people.
    Add {
        /// Group name.
        name: String,
        /// As `@handle`.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove people.
    Remove {
        /// Group name.
        name: String,
        /// As `@handle`.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Leave a group.
    Leave {
        /// Group name.
        name: String,
    },
    /// Rename a group.
    Rename {
        /// Current name.
        name: String,
        /// New name.
        new: String,
    },
    /// Make a member an admin (who may add, remove and promote), or a
    /// member again. Admins only.
    Role {
        /// Group name.
        name: String,
        /// Whose role, as `@handle`.
        member: String,
        /// The role.
        #[arg(value_parser = ["admin", "member"])]
        role: String,
    },
    /// Who may add people: `admins`, or `members` (everyone). Admins only.
    Adding {
        /// Group name.
        name: String,
        /// Who may add.
        #[arg(value_parser = ["admins", "members"])]
        who: String,
    },
    /// Set the group's picture for everyone in it (PNG, JPEG, GIF or WebP,
    /// at most 256 KiB), or remove it.
    Picture {
        /// Group name.
        name: String,
        /// The picture.
        #[arg(required_unless_present = "remove")]
        file: Option<PathBuf>,
        /// Remove the picture.
        #[arg(long, conflicts_with = "file")]
        remove: bool,
    },
    /// Say what the group is about, for everyone in it ("" clears it).
    Describe {
        /// Group name.
        name: String,
        /// The description.
        text: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum ProfileCommand {
    /// Set your name and picture; they go to every conversation you are
    /// in (and start), encrypted end to end: the server never sees them.
    Set {
        /// The name you go by (up to 64 characters; "" removes it).
        #[arg(long)]
        name: Option<String>,
        /// A picture: PNG, JPEG, GIF or WebP, at most 256 KiB.
        #[arg(long, value_name = "FILE", conflicts_with = "no_avatar")]
        avatar: Option<PathBuf>,
        /// Remove your picture.
        #[arg(long)]
        no_avatar: bool,
    },
    /// Show your profile, or someone's.
    Show {
        /// `@handle` (yours when left out).
        handle: Option<String>,
        /// Save the picture to this file.
        #[arg(long, value_name = "FILE")]
        avatar_out: Option<PathBuf>,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}
