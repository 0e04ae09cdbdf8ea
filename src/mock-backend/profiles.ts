/**
 * Deterministic fake QQ group profiles: the same id and revision always give byte-identical JSON, so tests and
 * benchmarks can compare bodies, and caches see realistic 1–2 KB payloads.
 */
import { mulberry32, picker, seedOf, type Picker } from './prng.js';

export interface GroupMember {
  uin: number;
  nickname: string;
}

export interface GroupProfile {
  id: number;
  name: string;
  owner: GroupMember;
  admins: GroupMember[];
  memberCount: number;
  memberLimit: number;
  level: number;
  tags: string[];
  notice: string;
  avatarUrl: string;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601; moves forward with every revision. */
  updatedAt: string;
  /** Bumped by each "incremental update" of the group. */
  revision: number;
}

const CITIES = [
  '北京',
  '上海',
  '广州',
  '深圳',
  '杭州',
  '成都',
  '武汉',
  '南京',
  '西安',
  '重庆',
  '苏州',
  '长沙',
] as const;
const TOPICS = [
  '摄影',
  '徒步',
  '读书',
  '编程',
  '前端',
  '羽毛球',
  '桌游',
  '二次元',
  '考研',
  '跑步',
  '钓鱼',
  '吉他',
  '咖啡',
  '骑行',
  '动漫',
  '电竞',
  '烘焙',
  '宠物',
  '租房',
  '留学',
  '游泳',
  '围棋',
  'Rust',
  'TypeScript',
] as const;
const SUFFIXES = ['交流群', '爱好者', '同好会', '俱乐部', '互助群', '学习群', '粉丝群', '官方群'] as const;
const NICK_PREFIXES = ['小', '阿', '老', '大', '快乐的', '安静的', '会飞的', '爱吃鱼的', '早起的', '不睡觉的'] as const;
const NICK_STEMS = [
  '猫',
  '狗',
  '兔子',
  '熊',
  '鲸鱼',
  '橘子',
  '西瓜',
  '月亮',
  '星星',
  '风',
  '云',
  '木头',
  'Leo',
  'Momo',
  'Kiki',
  'Jack',
  'Luna',
  'Nemo',
] as const;
const TAGS = [
  '同城',
  '兴趣',
  '学习',
  '技术',
  '运动',
  '户外',
  '游戏',
  '音乐',
  '美食',
  '旅行',
  '摄影',
  '读书',
  '校友',
  '求职',
  '二手',
  '宠物',
  '亲子',
  '健身',
  '开源',
  '活动',
] as const;
const NOTICE_SENTENCES = [
  '欢迎新朋友入群，请先阅读群公告并修改群名片为“城市-昵称”。',
  '本群禁止发布广告、二维码和任何形式的拉人链接，违者直接移出。',
  '每周六晚八点固定线上分享，欢迎大家报名主讲，题目不限。',
  '群文件里整理了往期资料和常见问题，提问前请先搜索一下。',
  '线下活动请在群相册里查看照片，报名请联系管理员。',
  '讨论请保持友善，不同观点可以交流，但请不要人身攻击。',
  '深夜十二点后请勿刷屏，照顾一下需要休息的群友。',
  '有问题可以直接@管理员，工作日晚上一般都会回复。',
  '本群已开启入群验证，请如实填写来源，方便我们审核。',
  '交流语言不限，English 和中文都欢迎，但请尽量围绕群主题。',
  '年度聚会时间待定，请关注后续公告和群投票结果。',
  '二手交易请走群内接龙，私下交易风险自负，谨防诈骗。',
  '新人请在入群三天内发一条自我介绍，介绍一下自己的城市和爱好。',
  '群内分享的资料仅供学习交流，请勿转载到其他平台或用于商业用途。',
  '如果发现有人冒充管理员私聊要钱，请立刻截图并举报。',
  '群名片格式不正确的成员会在每月一号统一清理，请及时修改。',
  '招聘和内推信息请统一发在周五的招聘专场，其他时间请勿发布。',
  '大家遇到好用的工具或者好看的文章，欢迎随时分享到群里。',
  '闲聊适度即可，较长的私人话题请移步私聊，不要占用公共频道。',
  '长期潜水且未发言的成员会在群满时优先被移出，敬请理解。',
] as const;
// Byte lengths precomputed: the notice is filled to a target payload size.
const NOTICE_BYTES = NOTICE_SENTENCES.map((sentence) => Buffer.byteLength(JSON.stringify(sentence)) - 2);
const MEMBER_LIMITS = [200, 500, 1000, 2000, 3000] as const;

// All timestamps derive from these so profiles never depend on the clock.
const EPOCH_2010 = Date.UTC(2010, 0, 1);
const TEN_YEARS_MS = 10 * 365 * 24 * 3600_000;
const YEAR_MS = 365 * 24 * 3600_000;
const HOUR_MS = 3600_000;

function member(pick: Picker): GroupMember {
  return {
    // QQ numbers are 5 to 10 digits.
    uin: pick.int(10_000, 3_999_999_999),
    nickname: pick.pick(NICK_PREFIXES) + pick.pick(NICK_STEMS) + (pick.float() < 0.4 ? String(pick.int(1, 999)) : ''),
  };
}

export function generateProfile(id: number, revision = 0): GroupProfile {
  const pick = picker(mulberry32(seedOf(id)));
  const memberLimit = pick.pick(MEMBER_LIMITS);
  const createdMs = EPOCH_2010 + Math.floor(pick.float() * TEN_YEARS_MS);
  const firstUpdateMs = createdMs + Math.floor(pick.float() * YEAR_MS);
  const profile: GroupProfile = {
    id,
    name:
      pick.pick(CITIES) + pick.pick(TOPICS) + pick.pick(SUFFIXES) + (pick.float() < 0.5 ? `${pick.int(1, 20)}群` : ''),
    owner: member(pick),
    admins: Array.from({ length: pick.int(0, 10) }, () => member(pick)),
    memberCount: pick.int(Math.ceil(memberLimit * 0.05), memberLimit - 20),
    memberLimit,
    level: pick.int(1, 7),
    tags: pick.sample(TAGS, pick.int(2, 5)),
    notice: '',
    avatarUrl: `https://p.qlogo.cn/gh/${id}/${id}/640/`,
    createdAt: new Date(createdMs).toISOString(),
    updatedAt: new Date(firstUpdateMs).toISOString(),
    revision: 0,
  };
  profile.notice = noticeFor(pick, Buffer.byteLength(JSON.stringify(profile)));
  if (revision === 0) return profile;

  // A touched group keeps its identity (everything above is seeded by id
  // alone) and only "updates": a drifted member count and a later timestamp.
  const drift = picker(mulberry32(seedOf(id, revision)));
  profile.memberCount = Math.min(memberLimit, Math.max(1, profile.memberCount + drift.int(-20, 20)));
  profile.updatedAt = new Date(firstUpdateMs + revision * HOUR_MS).toISOString();
  profile.revision = revision;
  return profile;
}

/**
 * The admin list alone swings the size by ~500 bytes, so the notice absorbs it: sentences are added up to a
 * seeded target, keeping every profile inside the 1–2 KB band real groups show.
 */
function noticeFor(pick: Picker, sizeWithoutNotice: number): string {
  const target = pick.int(1100, 1700);
  const order = pick.sample(
    NOTICE_SENTENCES.map((_, index) => index),
    NOTICE_SENTENCES.length,
  );
  let size = sizeWithoutNotice;
  let notice = '';
  for (const index of order) {
    if (size >= target) break;
    notice += NOTICE_SENTENCES[index] ?? '';
    size += NOTICE_BYTES[index] ?? 0;
  }
  return notice;
}
