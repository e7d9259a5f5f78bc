/** Roles and user-role links in the mongo store (links live in their own collection). */
import type { Model } from 'mongoose';

import { StoreConflictError } from '../errors.js';
import { newId } from '../ids.js';
import type { NewRole, Role, RolePatch, RoleRepository } from '../ports.js';
import { duplicateKey, isIdViolation, isViolationOf } from './duplicate-key.js';
import {
  roleLinkId,
  UNIQUE_INDEX,
  type RoleDocument,
  type RoleLinkDocument,
  type UserDocument,
} from './models.js';

function toRole(doc: RoleDocument): Role {
  return {
    id: doc._id,
    name: doc.name,
    display_name: doc.display_name,
    description: doc.description ?? null,
    permissions: [...(doc.permissions ?? [])],
    created_at: doc.created_at,
    updated_at: doc.updated_at,
  };
}

const byId = (id: string) => ({ _id: { $eq: id } });

export class MongoRoleRepository implements RoleRepository {
  constructor(
    private readonly roles: Model<RoleDocument>,
    private readonly roleLinks: Model<RoleLinkDocument>,
    private readonly users: Model<UserDocument>,
  ) {}

  async create(input: NewRole): Promise<Role> {
    const now = new Date();
    const doc: RoleDocument = {
      _id: input.id ?? newId('rol'),
      name: input.name,
      display_name: input.display_name ?? input.name,
      description: input.description ?? null,
      permissions: input.permissions ?? [],
      created_at: now,
      updated_at: now,
    };
    try {
      return toRole((await this.roles.create(doc)).toObject());
    } catch (err) {
      const dup = duplicateKey(err);
      if (!dup) throw err;
      if (isViolationOf(dup, UNIQUE_INDEX.roleName, 'name')) throw new StoreConflictError('name');
      if (isIdViolation(dup)) throw new StoreConflictError('id');
      // The server did not say which index (FerretDB on insert); only a caller-chosen id can collide.
      const idTaken = input.id !== undefined && (await this.roles.exists(byId(input.id))) !== null;
      throw new StoreConflictError(idTaken ? 'id' : 'name');
    }
  }

  async findById(id: string): Promise<Role | null> {
    const doc = await this.roles.findOne(byId(id)).lean<RoleDocument>();
    return doc ? toRole(doc) : null;
  }

  async findByName(name: string): Promise<Role | null> {
    const doc = await this.roles.findOne({ name: { $eq: name } }).lean<RoleDocument>();
    return doc ? toRole(doc) : null;
  }

  async list(): Promise<Role[]> {
    const docs = await this.roles.find({}).sort({ name: 1 }).lean<RoleDocument[]>();
    return docs.map(toRole);
  }

  async update(id: string, patch: RolePatch): Promise<Role | null> {
    const set: Partial<RoleDocument> = { updated_at: new Date() };
    if (patch.name !== undefined) set.name = patch.name;
    if (patch.display_name !== undefined) set.display_name = patch.display_name;
    if (patch.description !== undefined) set.description = patch.description;
    if (patch.permissions !== undefined) set.permissions = patch.permissions;
    try {
      const doc = await this.roles
        .findOneAndUpdate(byId(id), { $set: set }, { returnDocument: 'after' })
        .lean<RoleDocument>();
      return doc ? toRole(doc) : null;
    } catch (err) {
      // _id never changes, so the name is the only unique key an update can hit.
      if (duplicateKey(err)) throw new StoreConflictError('name');
      throw err;
    }
  }

  async remove(id: string): Promise<boolean> {
    const { deletedCount } = await this.roles.deleteOne(byId(id));
    // As for users: links after the role, and assign re-checks the role after linking.
    await this.roleLinks.deleteMany({ role_id: { $eq: id } });
    return deletedCount > 0;
  }

  private async bothExist(userId: string, roleId: string): Promise<boolean> {
    // Soft-deleted users count: they keep their links, as in the embedded store.
    const [user, role] = await Promise.all([
      this.users.exists(byId(userId)),
      this.roles.exists(byId(roleId)),
    ]);
    return user !== null && role !== null;
  }

  async assign(userId: string, roleId: string): Promise<boolean> {
    if (!(await this.bothExist(userId, roleId))) return false;
    try {
      await this.roleLinks.create({
        _id: roleLinkId(userId, roleId),
        user_id: userId,
        role_id: roleId,
        created_at: new Date(),
      });
    } catch (err) {
      if (duplicateKey(err)) return false;
      throw err;
    }
    // Without transactions the user or role may have been removed since the check. Removal deletes
    // the entity before its links, so either that deletion saw this link or this check sees it gone.
    if (!(await this.bothExist(userId, roleId))) {
      await this.roleLinks.deleteOne(byId(roleLinkId(userId, roleId)));
      return false;
    }
    return true;
  }

  async unassign(userId: string, roleId: string): Promise<boolean> {
    const { deletedCount } = await this.roleLinks.deleteOne(byId(roleLinkId(userId, roleId)));
    return deletedCount > 0;
  }

  async listForUser(userId: string): Promise<Role[]> {
    const links = await this.roleLinks
      .find({ user_id: { $eq: userId } }, { role_id: 1 })
      .lean<RoleLinkDocument[]>();
    if (links.length === 0) return [];
    const docs = await this.roles
      .find({ _id: { $in: links.map((l) => l.role_id) } })
      .sort({ name: 1 })
      .lean<RoleDocument[]>();
    return docs.map(toRole);
  }

  async listUserIds(roleId: string, limit: number): Promise<string[]> {
    const links = await this.roleLinks
      .find({ role_id: { $eq: roleId } }, { user_id: 1 })
      .sort({ user_id: 1 })
      .limit(limit)
      .lean<{ user_id: string }[]>();
    return links.map((l) => l.user_id);
  }

  async countUsers(roleId: string): Promise<number> {
    return this.roleLinks.countDocuments({ role_id: { $eq: roleId } });
  }
}
